//! Which platform a host belongs to, and the shape of each platform's error answers.

use serde_json::{json, Value};

use super::{Answer, Ids};

/// A contact-center platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// Genesys Cloud.
    Genesys,
    /// NICE CXone.
    Nice,
    /// Neither (a host the user added).
    Other,
}

/// Domains of Genesys Cloud regions (and its development and test environments).
pub const GENESYS_DOMAINS: &[&str] = &[
    "mypurecloud.com",
    "mypurecloud.ie",
    "mypurecloud.de",
    "mypurecloud.jp",
    "mypurecloud.com.au",
    "pure.cloud",
    "us-gov-pure.cloud",
    "inindca.com",
    "inintca.com",
];

/// Domains of NICE CXone.
const NICE_DOMAINS: &[&str] = &["nice-incontact.com", "niceincontact.com"];

fn below(host: &str, domain: &str) -> bool {
    host == domain || (host.ends_with(domain) && host.as_bytes().get(host.len() - domain.len() - 1) == Some(&b'.'))
}

impl Platform {
    /// The platform `host` (lower case, no port) belongs to.
    pub fn of_host(host: &str) -> Platform {
        if GENESYS_DOMAINS.iter().any(|d| below(host, d)) {
            Platform::Genesys
        } else if NICE_DOMAINS.iter().any(|d| below(host, d)) {
            Platform::Nice
        } else {
            Platform::Other
        }
    }

    /// Its name in configuration and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Genesys => "genesys",
            Platform::Nice => "nice",
            Platform::Other => "other",
        }
    }
}

/// A Genesys Cloud API error: `{message, code, status, contextId, details, errors}`, with the
/// correlation header the platform sends beside it.
pub fn genesys_error(ids: &Ids, status: u16, code: &str, message: &str, detail: &str) -> Answer {
    genesys_error_with(ids, status, code, message, detail, json!([]))
}

/// A Genesys Cloud API error whose `details` name what was wrong (e.g. `[{errorCode, fieldName}]`).
pub fn genesys_error_with(ids: &Ids, status: u16, code: &str, message: &str, detail: &str, details: Value) -> Answer {
    let context = ids.uuid();
    Answer::json(
        status,
        &json!({
            "message": message,
            "code": code,
            "status": status,
            "contextId": context,
            "details": details,
            "errors": [],
        }),
        detail,
    )
    .with_header("inin-correlation-id", context)
}

/// A NICE CXone API error: `{error, error_description}`.
pub fn nice_error(status: u16, error: &str, description: &str, detail: &str) -> Answer {
    Answer::json(status, &json!({"error": error, "error_description": description}), detail)
}

/// An OAuth 2.0 error as the Genesys login service writes it: `{error, description, error_description}`.
pub fn oauth_error(status: u16, error: &str, description: &str, detail: &str) -> Answer {
    Answer::json(status, &json!({"error": error, "description": description, "error_description": description}), detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_map_to_their_platform() {
        assert_eq!(Platform::of_host("api.mypurecloud.com"), Platform::Genesys);
        assert_eq!(Platform::of_host("login.usw2.pure.cloud"), Platform::Genesys);
        assert_eq!(Platform::of_host("api-na1.niceincontact.com"), Platform::Nice);
        assert_eq!(Platform::of_host("cxone.niceincontact.com"), Platform::Nice);
        assert_eq!(Platform::of_host("notpure.cloud"), Platform::Other);
        assert_eq!(Platform::of_host("example.com"), Platform::Other);
    }

    #[test]
    fn genesys_errors_carry_the_platform_fields() {
        let a = genesys_error(&Ids::new(0), 401, "bad.credentials", "Invalid login credentials.", "unknown-token");
        let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(v["code"], "bad.credentials");
        assert_eq!(v["status"], 401);
        assert_eq!(v["contextId"].as_str().unwrap().len(), 36);
        assert!(a.headers.iter().any(|(k, v)| k == "inin-correlation-id" && v.len() == 36));
    }
}
