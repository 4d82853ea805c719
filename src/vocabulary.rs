//! Category and integration names interned into bit sets, so that the per-event decision is a
//! handful of bit operations instead of string comparisons.
//!
//! Only names that some destination mentions are interned: a category no destination needs
//! cannot change any decision, so it is skipped while parsing. `[consent.aliases]` map more
//! names to the same bits.

use std::collections::HashMap;

use crate::config::Config;

/// A set of consent categories (and channel subscriptions), one bit per name known to the
/// configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CategorySet(u64);

impl CategorySet {
    pub const EMPTY: CategorySet = CategorySet(0);

    pub fn from_bits(bits: u64) -> CategorySet {
        CategorySet(bits)
    }

    pub fn bits(self) -> u64 {
        self.0
    }

    pub fn insert(&mut self, index: u8) {
        self.0 |= 1 << index;
    }

    pub fn contains(self, index: u8) -> bool {
        self.0 & (1 << index) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn intersection(self, other: CategorySet) -> CategorySet {
        CategorySet(self.0 & other.0)
    }

    pub fn union(self, other: CategorySet) -> CategorySet {
        CategorySet(self.0 | other.0)
    }

    pub fn without(self, other: CategorySet) -> CategorySet {
        CategorySet(self.0 & !other.0)
    }

    pub fn is_superset(self, other: CategorySet) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn intersects(self, other: CategorySet) -> bool {
        self.0 & other.0 != 0
    }
}

/// A set of integration names, one bit per name known to the configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IntegrationSet(u128);

impl IntegrationSet {
    pub fn insert(&mut self, index: u8) {
        self.0 |= 1 << index;
    }

    pub fn contains(self, index: u8) -> bool {
        self.0 & (1 << index) != 0
    }

    pub fn intersects(self, other: IntegrationSet) -> bool {
        self.0 & other.0 != 0
    }
}

/// The names the configuration knows, each with its bit.
///
/// Categories and channels share one [`CategorySet`]: a channel's bit is set in a stored
/// state when the user is `subscribed` on it, so the as-of rule and the newer-of-two rule
/// judge subscriptions exactly as they judge grants. An event's own stamps say nothing about
/// channels: they carry every channel bit (see [`Vocabulary::channels`]).
#[derive(Debug, Default)]
pub struct Vocabulary {
    /// The name of each bit: a category, a channel, `gpc` or a jurisdiction.
    bits: Vec<String>,
    kinds: Vec<BitKind>,
    channels: CategorySet,
    /// With `[[jurisdiction]]`: the bit a state sets when it carries a GPC signal.
    gpc: Option<u8>,
    /// The bit of each jurisdiction (a state sets the one its `jurisdiction` falls in), by
    /// name and by each code it matches.
    jurisdiction_names: HashMap<String, u8>,
    jurisdiction_codes: HashMap<String, u8>,
    jurisdictions: CategorySet,
    /// Category names and `[consent.aliases]`, each with its name number (for telling a
    /// repeated key from two names of one category) and its bit (`None`: an alias of a
    /// category no destination needs).
    category_names: HashMap<String, (u8, Option<u8>)>,
    channel_index: HashMap<String, u8>,
    integrations: Vec<String>,
    integration_index: HashMap<String, u8>,
    /// With `consent.learn_from_events`: the `track` event names that carry a CMP's choice.
    learn_event_names: Option<Vec<String>>,
}

/// What a bit of the set stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BitKind {
    Category,
    /// Subscribed on this channel.
    Channel,
    /// A Global Privacy Control signal.
    Gpc,
    /// The choice was made under this jurisdiction.
    Jurisdiction,
}

/// A name read in consent preferences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CategoryName {
    /// Distinct for each distinct name (below 128).
    pub number: u8,
    /// The category's bit, if a destination needs it.
    pub bit: Option<u8>,
}

impl Vocabulary {
    /// Interns every category, channel and integration name of every destination, in config
    /// order, then the aliases. The config must have been validated (it bounds how many names
    /// there are).
    pub fn from_config(config: &Config) -> Vocabulary {
        let mut vocabulary = Vocabulary::default();
        for dest in &config.destinations {
            for category in &dest.categories {
                vocabulary.intern_category(category);
            }
            for name in dest.integration_names() {
                vocabulary.intern_integration(&name);
            }
        }
        for dest in &config.destinations {
            if let Some(channel) = &dest.channel {
                vocabulary.intern_channel(channel);
            }
        }
        for (alias, category) in &config.consent.aliases {
            vocabulary.add_alias(alias, category);
        }
        if config.consent.learn_from_events {
            vocabulary.learn_event_names = Some(config.consent.learn_event_names.clone());
        }
        if !config.jurisdictions.is_empty() {
            let gpc = vocabulary.new_bit("gpc", BitKind::Gpc);
            vocabulary.gpc = Some(gpc);
            for jurisdiction in &config.jurisdictions {
                let bit = vocabulary.new_bit(&jurisdiction.name, BitKind::Jurisdiction);
                vocabulary.jurisdictions.insert(bit);
                vocabulary
                    .jurisdiction_names
                    .insert(jurisdiction.name.clone(), bit);
                for code in &jurisdiction.codes {
                    vocabulary.jurisdiction_codes.insert(code.clone(), bit);
                }
            }
        }
        vocabulary
    }

    /// The bit a state sets for a GPC signal, when jurisdictions are configured.
    pub fn gpc(&self) -> Option<u8> {
        self.gpc
    }

    /// Whether a `track` event of this name carries a CMP's choice to learn.
    pub fn learns_from(&self, event_name: &str) -> bool {
        self.learn_event_names
            .as_ref()
            .is_some_and(|names| names.iter().any(|n| n == event_name))
    }

    pub fn learns(&self) -> bool {
        self.learn_event_names.is_some()
    }

    pub fn has_jurisdictions(&self) -> bool {
        !self.jurisdictions.is_empty()
    }

    /// Every jurisdiction bit.
    pub fn jurisdictions(&self) -> CategorySet {
        self.jurisdictions
    }

    /// The bits only a stored state sets (channels, GPC, jurisdiction): an event's stamps
    /// say nothing about them.
    pub fn state_only(&self) -> CategorySet {
        let mut set = self.channels.union(self.jurisdictions);
        if let Some(gpc) = self.gpc {
            set.insert(gpc);
        }
        set
    }

    /// The jurisdiction a state's `jurisdiction` names: a configured jurisdiction's name, or
    /// an ISO code (`US-CA`, else its country `US`) that one matches.
    pub fn jurisdiction_named(&self, text: &str) -> Option<u8> {
        if let Some(&bit) = self.jurisdiction_names.get(text) {
            return Some(bit);
        }
        let code = text.trim().to_ascii_uppercase();
        self.jurisdiction_of_code(&code)
    }

    /// The jurisdiction an ISO code falls in: its own entry, else its country's.
    pub fn jurisdiction_of_code(&self, code: &str) -> Option<u8> {
        self.jurisdiction_codes.get(code).copied().or_else(|| {
            code.split_once('-')
                .and_then(|(country, _)| self.jurisdiction_codes.get(country).copied())
        })
    }

    /// The jurisdiction of an event's `context.location`.
    pub fn jurisdiction_at(&self, country: Option<&str>, region: Option<&str>) -> Option<u8> {
        if self.jurisdictions.is_empty() {
            return None;
        }
        let country = crate::location::country_code(country?)?;
        region
            .and_then(|region| crate::location::subdivision_code(&country, region))
            .and_then(|code| self.jurisdiction_codes.get(&code).copied())
            .or_else(|| self.jurisdiction_codes.get(&country).copied())
    }

    pub fn kind(&self, bit: u8) -> BitKind {
        self.kinds[usize::from(bit)]
    }

    pub fn intern_category(&mut self, name: &str) -> u8 {
        if let Some(&(_, Some(bit))) = self.category_names.get(name) {
            return bit;
        }
        let bit = self.new_bit(name, BitKind::Category);
        let number = self.category_names.len() as u8;
        self.category_names
            .insert(name.to_owned(), (number, Some(bit)));
        bit
    }

    pub fn intern_channel(&mut self, name: &str) -> u8 {
        if let Some(&bit) = self.channel_index.get(name) {
            return bit;
        }
        let bit = self.new_bit(name, BitKind::Channel);
        self.channels.insert(bit);
        self.channel_index.insert(name.to_owned(), bit);
        bit
    }

    /// `alias` stands for `category` in consent preferences; it means nothing when no
    /// destination needs the category. Added after every category is interned.
    pub fn add_alias(&mut self, alias: &str, category: &str) {
        if self.category_names.contains_key(alias) {
            return;
        }
        let bit = self.category_names.get(category).and_then(|&(_, bit)| bit);
        let number = self.category_names.len() as u8;
        self.category_names.insert(alias.to_owned(), (number, bit));
    }

    fn new_bit(&mut self, name: &str, kind: BitKind) -> u8 {
        let bit = self.bits.len() as u8;
        self.bits.push(name.to_owned());
        self.kinds.push(kind);
        bit
    }

    pub fn intern_integration(&mut self, name: &str) -> u8 {
        intern(&mut self.integrations, &mut self.integration_index, name)
    }

    /// The bit of a category name or alias.
    pub fn category(&self, name: &str) -> Option<u8> {
        self.category_names.get(name).and_then(|&(_, bit)| bit)
    }

    /// A name read in consent preferences, if it is a category or an alias.
    pub fn category_name_of(&self, name: &str) -> Option<CategoryName> {
        self.category_names
            .get(name)
            .map(|&(number, bit)| CategoryName { number, bit })
    }

    pub fn channel(&self, name: &str) -> Option<u8> {
        self.channel_index.get(name).copied()
    }

    /// Every channel bit.
    pub fn channels(&self) -> CategorySet {
        self.channels
    }

    pub fn is_channel(&self, bit: u8) -> bool {
        self.channels.contains(bit)
    }

    pub fn is_category(&self, bit: u8) -> bool {
        self.kinds[usize::from(bit)] == BitKind::Category
    }

    pub fn integration(&self, name: &str) -> Option<u8> {
        self.integration_index.get(name).copied()
    }

    /// The category or channel name of a bit.
    pub fn bit_name(&self, bit: u8) -> &str {
        &self.bits[usize::from(bit)]
    }

    /// How many bits are named (categories and channels).
    pub fn bit_count(&self) -> u8 {
        // Bounded by config::MAX_CATEGORIES.
        self.bits.len() as u8
    }

    /// Every category and channel bit.
    pub fn all_categories(&self) -> CategorySet {
        let mut all = CategorySet::EMPTY;
        for index in 0..self.bit_count() {
            if matches!(self.kind(index), BitKind::Category | BitKind::Channel) {
                all.insert(index);
            }
        }
        all
    }

    /// The set of the named categories; unknown names are interned.
    pub fn category_set<'a>(&mut self, names: impl IntoIterator<Item = &'a String>) -> CategorySet {
        let mut set = CategorySet::EMPTY;
        for name in names {
            set.insert(self.intern_category(name));
        }
        set
    }

    pub fn integration_set<'a>(
        &mut self,
        names: impl IntoIterator<Item = &'a String>,
    ) -> IntegrationSet {
        let mut set = IntegrationSet::default();
        for name in names {
            set.insert(self.intern_integration(name));
        }
        set
    }
}

fn intern(names: &mut Vec<String>, index: &mut HashMap<String, u8>, name: &str) -> u8 {
    if let Some(&i) = index.get(name) {
        return i;
    }
    let i = names.len() as u8;
    names.push(name.to_owned());
    index.insert(name.to_owned(), i);
    i
}
