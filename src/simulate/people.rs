//! Fake customers and products for simulated notifications, in the spirit of
//! `fixtures/generate.py`: UTF-8 names (the byte-length pitfall of docs/protocol.md §3),
//! addresses in several countries, and a small catalogue priced per
//! currency.
//!
//! Everything here is invented. E-mail domains are `example.*` (RFC 2606),
//! phone numbers have at most 12 digits and IP addresses come from the
//! documentation ranges, so that nothing here is a real person, and no
//! value is ever long enough to look like a card number to the PAN guard.

use crate::domain::Currency;

use super::rng::Rng;

/// A first or last name as shown, and its ASCII form for e-mail addresses.
type Name = (&'static str, &'static str);

const FIRST_NAMES: &[Name] = &[
    ("R. Álvaro", "alvaro"),
    ("Zoë", "zoe"),
    ("太郎", "taro"),
    ("John", "john"),
    ("Fatima", "fatima"),
    ("Søren", "soren"),
    ("Łucja", "lucja"),
    ("François", "francois"),
    ("Ngozi", "ngozi"),
    ("Mei-Ling", "meiling"),
    ("Björn", "bjorn"),
    ("Ана", "ana"),
    ("Siobhán", "siobhan"),
    ("José", "jose"),
];

const LAST_NAMES: &[Name] = &[
    ("Muñoz García", "munoz"),
    ("Brontë-Smith", "bronte"),
    ("山田", "yamada"),
    ("Smith", "smith"),
    ("Al-Khalifa", "alkhalifa"),
    ("Kierkegård", "kierkegard"),
    ("Wiśniewska", "wisniewska"),
    ("Lefèvre", "lefevre"),
    ("Okonkwo", "okonkwo"),
    ("Chén", "chen"),
    ("Ångström", "angstrom"),
    ("Петрова", "petrova"),
    ("Ó Briain", "obriain"),
    ("Dos Santos", "dossantos"),
];

/// Where a customer lives.
#[derive(Debug, Clone, Copy)]
pub struct Place {
    /// Street names; a house number is added.
    pub streets: &'static [&'static str],
    pub city: &'static str,
    pub state: &'static str,
    pub zip: &'static str,
    /// The country name, as the processor writes it.
    pub country: &'static str,
    /// Lower-case ISO-2 (docs/protocol.md §1.1).
    pub country_code: &'static str,
    /// International prefix and the lengths of the digit groups after it.
    pub phone_prefix: &'static str,
    pub phone_groups: &'static [usize],
    pub email_domain: &'static str,
}

const PLACES: &[Place] = &[
    Place {
        streets: &["Calle de Alcalá", "Gran Vía", "Paseo de la Castellana"],
        city: "Madrid",
        state: "Madrid",
        zip: "28014",
        country: "Spain",
        country_code: "es",
        phone_prefix: "+34",
        phone_groups: &[3, 3, 3],
        email_domain: "example.es",
    },
    Place {
        streets: &["Baker Street", "Abbey Road", "Königin-Luise-Straße"],
        city: "London",
        state: "",
        zip: "NW1 6XE",
        country: "United Kingdom",
        country_code: "gb",
        phone_prefix: "+44",
        phone_groups: &[2, 4, 4],
        email_domain: "example.co.uk",
    },
    Place {
        streets: &["千代田区丸の内", "渋谷区神南", "港区六本木"],
        city: "東京",
        state: "東京都",
        zip: "100-0005",
        country: "Japan",
        country_code: "jp",
        phone_prefix: "+81",
        phone_groups: &[1, 4, 4],
        email_domain: "example.jp",
    },
    Place {
        streets: &["Main Street", "Broadway", "Elm Avenue"],
        city: "New York",
        state: "New York",
        zip: "10001",
        country: "United States of America",
        country_code: "us",
        phone_prefix: "+1",
        phone_groups: &[3, 3, 4],
        email_domain: "example.com",
    },
    Place {
        streets: &[
            "Road 1702, Block 317",
            "Government Avenue",
            "Exhibition Road",
        ],
        city: "Manama",
        state: "",
        zip: "317",
        country: "Bahrain",
        country_code: "bh",
        phone_prefix: "+973",
        phone_groups: &[4, 4],
        email_domain: "example.bh",
    },
    Place {
        streets: &["Nørrebrogade", "Østerbrogade", "Strøget"],
        city: "København",
        state: "",
        zip: "2200",
        country: "Denmark",
        country_code: "dk",
        phone_prefix: "+45",
        phone_groups: &[2, 2, 2, 2],
        email_domain: "example.dk",
    },
    Place {
        streets: &[
            "ul. Marszałkowska",
            "ul. Świętokrzyska",
            "Aleje Jerozolimskie",
        ],
        city: "Warszawa",
        state: "mazowieckie",
        zip: "00-624",
        country: "Poland",
        country_code: "pl",
        phone_prefix: "+48",
        phone_groups: &[3, 3, 3],
        email_domain: "example.pl",
    },
    Place {
        streets: &["Rue de Rivoli", "Boulevard Saint-Germain", "Rue Mouffetard"],
        city: "Paris",
        state: "Île-de-France",
        zip: "75004",
        country: "France",
        country_code: "fr",
        phone_prefix: "+33",
        phone_groups: &[1, 2, 2, 2, 2],
        email_domain: "example.fr",
    },
];

const COMPANIES: &[&str] = &[
    "Ωmega Widgets Ltd",
    "BV-6677",
    "Fjord Analytics ApS",
    "Zakład Usług Sp. z o.o.",
    "株式会社サンプル",
    "Café Numérique SARL",
];

/// One fake customer: every value here is personal data that must never
/// reach the database or the logs.
/// A fake shopper. Fake, but handled like real personal data: `Debug`
/// shows only the country.
#[derive(Clone, PartialEq, Eq)]
pub struct Customer {
    pub first_name: String,
    pub last_name: String,
    pub company: String,
    pub address: String,
    pub city: String,
    pub state: String,
    pub zip: String,
    pub country: String,
    pub country_code: String,
    pub phone: String,
    pub email: String,
    /// The shopper's IP address (RFC 5737 documentation ranges).
    pub ip_address: String,
}

impl std::fmt::Debug for Customer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Customer")
            .field("country_code", &self.country_code)
            .finish_non_exhaustive()
    }
}

impl Customer {
    /// A random customer; `serial` makes the e-mail address unique.
    pub fn random(rng: &mut Rng, serial: u64) -> Self {
        let (first, first_ascii) = *rng.pick(FIRST_NAMES).unwrap_or(&FIRST_NAMES[0]);
        let (last, last_ascii) = *rng.pick(LAST_NAMES).unwrap_or(&LAST_NAMES[0]);
        let place = *rng.pick(PLACES).unwrap_or(&PLACES[0]);
        let street = *rng.pick(place.streets).unwrap_or(&"Main Street");
        let company = if rng.chance(0.25) {
            rng.pick(COMPANIES).copied().unwrap_or("")
        } else {
            ""
        };
        let mut phone = place.phone_prefix.to_owned();
        for &group in place.phone_groups {
            phone.push(' ');
            for _ in 0..group {
                phone.push(char::from(b'0' + rng.below(10) as u8));
            }
        }
        let ip_nets = ["192.0.2", "198.51.100", "203.0.113"];
        let net = rng.pick(&ip_nets).copied().unwrap_or("192.0.2");
        Self {
            first_name: first.to_owned(),
            last_name: last.to_owned(),
            company: company.to_owned(),
            address: format!("{street} {}", rng.range(1, 250)),
            city: place.city.to_owned(),
            state: place.state.to_owned(),
            zip: place.zip.to_owned(),
            country: place.country.to_owned(),
            country_code: place.country_code.to_owned(),
            phone,
            email: format!("{first_ascii}.{last_ascii}.{serial}@{}", place.email_domain),
            ip_address: format!("{net}.{}", rng.range(1, 254)),
        }
    }

    /// The values a leak scan should look for (names, address, phone,
    /// e-mail; not the city or country, which are not personal alone).
    pub fn personal_values(&self) -> Vec<&str> {
        [
            self.first_name.as_str(),
            self.last_name.as_str(),
            self.address.as_str(),
            self.phone.as_str(),
            self.email.as_str(),
        ]
        .into_iter()
        .filter(|value| !value.is_empty())
        .collect()
    }
}

/// A catalogue entry: id, name, code, price in euro cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Product {
    pub id: &'static str,
    pub name: &'static str,
    pub code: &'static str,
    pub eur_cents: u64,
}

/// Prices are written `units_cents` (`89_00` is 89.00 EUR).
#[allow(clippy::inconsistent_digit_grouping)]
pub const PRODUCTS: &[Product] = &[
    Product {
        id: "4711",
        name: "Backup Suite Pro",
        code: "BSP-1",
        eur_cents: 89_00,
    },
    Product {
        id: "4712",
        name: "Cloud Add-on (1 year)",
        code: "CAO-1",
        eur_cents: 18_00,
    },
    Product {
        id: "4713",
        name: "Café Edition",
        code: "CAFE-1",
        eur_cents: 49_99,
    },
    Product {
        id: "4714",
        name: "Priority support",
        code: "SUP-1",
        eur_cents: 50_00,
    },
    Product {
        id: "4715",
        name: "Übersetzer-Paket „Deluxe“",
        code: "TRD-2",
        eur_cents: 129_00,
    },
    Product {
        id: "4716",
        name: "Seat licence — Team (5 users)",
        code: "TEAM-5",
        eur_cents: 245_00,
    },
    Product {
        id: "4717",
        name: "データ復旧キット",
        code: "DRK-1",
        eur_cents: 35_50,
    },
];

/// The price of `eur_cents` euro cents in `currency`'s minor units, at a
/// fixed, invented rate (the simulator needs plausible, not current,
/// prices). Currencies without a rate here are priced 1:1 with the euro.
pub fn price_in(eur_cents: u64, currency: Currency) -> u64 {
    // (numerator, denominator) of "units of currency per euro".
    let (num, den) = match currency.as_str() {
        "USD" => (108, 100),
        "GBP" => (86, 100),
        "CHF" => (96, 100),
        "JPY" => (160, 1),
        "BHD" => (41, 100),
        "KWD" => (33, 100),
        "SEK" => (1150, 100),
        _ => (1, 1),
    };
    let scale = 10u64.pow(currency.exponent());
    // eur_cents / 100 euros * rate * 10^exponent minor units.
    let minor = eur_cents.saturating_mul(num).saturating_mul(scale) / (den * 100);
    // Prices end in a "nice" digit per currency, as shops set them.
    match currency.exponent() {
        0 => (minor / 10).max(1) * 10,
        3 => (minor / 5).max(1) * 5,
        _ => minor.max(1),
    }
}
