//! Where an event says its user is: Segment's `context.location` carries `country` and
//! `region` as English names ("United States", "California") or as ISO codes; this turns
//! them into ISO 3166 codes (`US`, `US-CA`). The name table ([`names`]) is generated from the
//! ISO 3166 data in pycountry (Debian's iso-codes): country short, official and common names
//! and alpha-3 codes, and the subdivisions of the United States and Canada.

mod names;

/// Names and codes in common use that ISO 3166 does not list (geolocation services and
/// people write them): the two exceptionally reserved codes the EU uses (`UK`, `EL`) and
/// everyday English names. Looked up before the generated table, after a leading "the ".
const COMMON_NAMES: &[(&str, &str)] = &[
    ("brunei", "BN"),
    ("cape verde", "CV"),
    ("czech republic", "CZ"),
    ("el", "GR"),
    ("great britain", "GB"),
    ("holland", "NL"),
    ("ivory coast", "CI"),
    ("kosovo", "XK"),
    ("macau", "MO"),
    ("north korea", "KP"),
    ("palestine", "PS"),
    ("republic of korea", "KR"),
    ("russia", "RU"),
    ("south korea", "KR"),
    ("turkey", "TR"),
    ("uk", "GB"),
    ("united states of america", "US"),
    ("usa", "US"),
    ("vatican city", "VA"),
];

/// The ISO 3166-1 alpha-2 code of a country given by code or English name.
pub fn country_code(country: &str) -> Option<String> {
    let text = country.trim();
    let full = normalized(text);
    let short = full.strip_prefix("the ").unwrap_or(&full);
    if let Some((_, code)) = COMMON_NAMES.iter().find(|(name, _)| *name == short) {
        return Some((*code).to_owned());
    }
    if text.len() == 2 && text.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Some(text.to_ascii_uppercase());
    }
    // The name as written ("The State of Eritrea" is ISO's), else without its "the ".
    let lookup = |key: &str| {
        names::COUNTRIES
            .binary_search_by(|(name, _)| (*name).cmp(key))
            .ok()
            .map(|i| names::COUNTRIES[i].1.to_owned())
    };
    lookup(&full).or_else(|| lookup(short))
}

/// The ISO 3166-2 code of a region of `country` (an alpha-2 code) given as a full code
/// (`US-CA`), a subdivision code (`CA`) or an English name (`California`).
pub fn subdivision_code(country: &str, region: &str) -> Option<String> {
    let text = region.trim();
    let upper = text.to_ascii_uppercase();
    if let Some((prefix, _)) = upper.split_once('-') {
        return (prefix == country && is_code(&upper)).then_some(upper);
    }
    if (1..=3).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Some(format!("{country}-{upper}"));
    }
    let key = normalized(text);
    names::SUBDIVISIONS
        .iter()
        .find(|(cc, name, _)| *cc == country && *name == key)
        .map(|(_, _, code)| (*code).to_owned())
}

/// Whether `code` is written as an ISO 3166-1 alpha-2 (`DE`) or 3166-2 (`US-CA`) code.
pub fn is_code(code: &str) -> bool {
    let bytes = code.as_bytes();
    let country = bytes.len() >= 2 && bytes[..2].iter().all(u8::is_ascii_uppercase);
    match bytes.get(2) {
        None => country,
        Some(b'-') => {
            country
                && (4..=6).contains(&bytes.len())
                && bytes[3..]
                    .iter()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        }
        Some(_) => false,
    }
}

fn normalized(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes_give_the_same_codes() {
        assert_eq!(country_code("United States").as_deref(), Some("US"));
        assert_eq!(
            country_code("united  states of america").as_deref(),
            Some("US")
        );
        assert_eq!(country_code("us").as_deref(), Some("US"));
        assert_eq!(country_code("DEU").as_deref(), Some("DE"));
        assert_eq!(country_code("Germany").as_deref(), Some("DE"));
        assert_eq!(country_code("Côte d'Ivoire").as_deref(), Some("CI"));
        assert_eq!(country_code("Atlantis"), None);
        assert_eq!(country_code("The Netherlands").as_deref(), Some("NL"));
        assert_eq!(country_code("The State of Eritrea").as_deref(), Some("ER"));
        assert_eq!(country_code("UK").as_deref(), Some("GB"));
        assert_eq!(country_code("Russia").as_deref(), Some("RU"));
        assert_eq!(country_code("South Korea").as_deref(), Some("KR"));
        assert_eq!(
            subdivision_code("US", "California").as_deref(),
            Some("US-CA")
        );
        assert_eq!(subdivision_code("US", "ca").as_deref(), Some("US-CA"));
        assert_eq!(subdivision_code("US", "US-CA").as_deref(), Some("US-CA"));
        assert_eq!(subdivision_code("US", "FR-75"), None);
        assert_eq!(subdivision_code("CA", "Quebec").as_deref(), Some("CA-QC"));
        assert_eq!(subdivision_code("US", "Nowhere"), None);
    }

    #[test]
    fn the_name_table_is_sorted_for_binary_search() {
        assert!(names::COUNTRIES.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn codes_are_iso_3166_shaped() {
        for code in ["DE", "US-CA", "FR-75", "GB-ENG"] {
            assert!(is_code(code), "{code}");
        }
        for code in ["de", "D", "DEU", "US-", "US-CALIF", "US_CA", ""] {
            assert!(!is_code(code), "{code}");
        }
    }
}
