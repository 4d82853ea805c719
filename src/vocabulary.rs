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
    /// The name of each bit: a category or a channel.
    bits: Vec<String>,
    channels: CategorySet,
    /// Category names and `[consent.aliases]`, each with its name number (for telling a
    /// repeated key from two names of one category) and its bit (`None`: an alias of a
    /// category no destination needs).
    category_names: HashMap<String, (u8, Option<u8>)>,
    channel_index: HashMap<String, u8>,
    integrations: Vec<String>,
    integration_index: HashMap<String, u8>,
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
        vocabulary
    }

    pub fn intern_category(&mut self, name: &str) -> u8 {
        if let Some(&(_, Some(bit))) = self.category_names.get(name) {
            return bit;
        }
        let bit = self.new_bit(name);
        let number = self.category_names.len() as u8;
        self.category_names
            .insert(name.to_owned(), (number, Some(bit)));
        bit
    }

    pub fn intern_channel(&mut self, name: &str) -> u8 {
        if let Some(&bit) = self.channel_index.get(name) {
            return bit;
        }
        let bit = self.new_bit(name);
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

    fn new_bit(&mut self, name: &str) -> u8 {
        let bit = self.bits.len() as u8;
        self.bits.push(name.to_owned());
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
            all.insert(index);
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
