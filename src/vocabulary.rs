//! Category and integration names interned into bit sets, so that the per-event decision is a
//! handful of bit operations instead of string comparisons.
//!
//! Only names that some destination mentions are interned: a category no destination needs
//! cannot change any decision, so it is skipped while parsing.

use std::collections::HashMap;

use crate::config::Config;

/// A set of consent categories, one bit per category known to the configuration.
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
#[derive(Debug, Default)]
pub struct Vocabulary {
    categories: Vec<String>,
    category_index: HashMap<String, u8>,
    integrations: Vec<String>,
    integration_index: HashMap<String, u8>,
}

impl Vocabulary {
    /// Interns every category and integration name of every destination, in config order.
    /// The config must have been validated (it bounds how many names there are).
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
        vocabulary
    }

    pub fn intern_category(&mut self, name: &str) -> u8 {
        intern(&mut self.categories, &mut self.category_index, name)
    }

    pub fn intern_integration(&mut self, name: &str) -> u8 {
        intern(&mut self.integrations, &mut self.integration_index, name)
    }

    pub fn category(&self, name: &str) -> Option<u8> {
        self.category_index.get(name).copied()
    }

    pub fn integration(&self, name: &str) -> Option<u8> {
        self.integration_index.get(name).copied()
    }

    pub fn category_name(&self, index: u8) -> &str {
        &self.categories[usize::from(index)]
    }

    pub fn category_count(&self) -> u8 {
        // Bounded by config::MAX_CATEGORIES.
        self.categories.len() as u8
    }

    /// Every category known.
    pub fn all_categories(&self) -> CategorySet {
        let mut all = CategorySet::EMPTY;
        for index in 0..self.category_count() {
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
