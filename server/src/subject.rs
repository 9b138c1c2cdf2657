//! The subject of a client certificate, as the tokens file names it (`[[certificate]]`
//! tables, see `auth`).
//!
//! Matching rule, chosen so that neither side's attribute order nor spacing matters: a
//! subject is the set of its `TYPE=value` attributes. `TYPE` is the usual short name
//! (`CN`, `O`, `OU`, `C`, `L`, `ST`, `DC`, `Email`, or the OID registry's short name,
//! else the dotted OID) compared without case; the value is compared exactly. A
//! certificate matches an entry when its set equals the entry's: `CN=billing,O=acme`
//! matches a certificate whose subject is `O=acme, CN=billing` but not one that also
//! has `OU=ops`. RFC 4514 strings and OpenSSL's `-subject` output list the attributes in
//! opposite orders, which a set comparison makes irrelevant. In the file a `,` or `\`
//! inside a value is written `\,` or `\\`.
//!
//! Why `x509-parser`: it is the maintained rusticata parser that rcgen itself builds
//! on, pure Rust and already in the dependency tree, and it names attributes by OID
//! with a registry of short names. rustls verifies the chain at the handshake and hands
//! over only DER, and `rustls-pki-types` does not parse names.

use std::fmt;

use x509_parser::objects::{oid_registry, oid2abbrev};
use x509_parser::prelude::{FromDer, X509Certificate};

/// A certificate subject: its attributes, sorted, each `(TYPE upper-cased, value)`.
/// Two subjects are equal when their attributes are, however they were written.
#[derive(Debug, Clone)]
pub struct Subject {
    attributes: Vec<(String, String)>,
    /// As written (file) or in the certificate's order (certificate), for messages.
    display: String,
}

impl Subject {
    /// The subject of a DER certificate, or why it cannot be read. A value that is not
    /// a string type is taken as its hex bytes, `#…`, so every attribute counts.
    pub fn of_certificate(der: &[u8]) -> Result<Subject, String> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
        let mut attributes = Vec::new();
        for attribute in cert.subject().iter_attributes() {
            let oid = attribute.attr_type();
            let kind = oid2abbrev(oid, oid_registry()).map_or_else(|_| oid.to_id_string(), str::to_owned);
            let value = attribute.as_str().map_or_else(
                |_| {
                    let bytes = attribute.attr_value().data;
                    format!(
                        "#{}",
                        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
                    )
                },
                str::to_owned,
            );
            attributes.push((kind.to_ascii_uppercase(), value));
        }
        let display = attributes
            .iter()
            .map(|(k, v)| format!("{k}={}", escape(v)))
            .collect::<Vec<_>>()
            .join(",");
        Ok(Subject::new(attributes, display))
    }

    /// A subject as the tokens file writes it, `CN=billing,O=acme`, or what is wrong.
    pub fn parse(text: &str) -> Result<Subject, String> {
        let mut attributes = Vec::new();
        for part in split(text)? {
            let Some((kind, value)) = part.split_once('=') else {
                return Err(format!("{part:?} is not TYPE=value"));
            };
            let kind = kind.trim();
            let valid = !kind.is_empty() && kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '.');
            if !valid {
                return Err(format!("{kind:?} is not an attribute type such as CN or O"));
            }
            let value = value.trim();
            if value.is_empty() {
                return Err(format!("{kind} has an empty value"));
            }
            attributes.push((kind.to_ascii_uppercase(), value.to_owned()));
        }
        if attributes.is_empty() {
            return Err("empty subject: write e.g. \"CN=billing,O=acme\"".into());
        }
        let mut seen = attributes.clone();
        seen.sort();
        if let Some(twice) = seen.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("{}={} is written twice", twice[0].0, twice[0].1));
        }
        Ok(Subject::new(attributes, text.trim().to_owned()))
    }

    fn new(mut attributes: Vec<(String, String)>, display: String) -> Subject {
        attributes.sort();
        Subject { attributes, display }
    }
}

impl PartialEq for Subject {
    fn eq(&self, other: &Subject) -> bool {
        self.attributes == other.attributes
    }
}

impl Eq for Subject {}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

/// The parts of `text` between unescaped commas, unescaped.
fn split(text: &str) -> Result<Vec<String>, String> {
    let mut parts = vec![String::new()];
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped @ (',' | '\\' | '=' | '+')) => parts.last_mut().map_or((), |p| p.push(escaped)),
                other => {
                    return Err(format!(
                        "\\{} is no escape: write \\, or \\\\",
                        other.unwrap_or(' ')
                    ));
                }
            },
            ',' => parts.push(String::new()),
            c => parts.last_mut().map_or((), |p| p.push(c)),
        }
    }
    Ok(parts.into_iter().filter(|p| !p.trim().is_empty()).collect())
}

/// A value as the file would write it.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace(',', "\\,")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_subjects_compare_as_sets_of_attributes() {
        let cases = [
            ("CN=billing,O=acme", "O=acme, CN=billing", true),
            ("cn=billing,o=acme", "CN=billing,O=acme", true),
            ("CN=billing", "CN=billing,O=acme", false),
            ("CN=Billing", "CN=billing", false),
            ("CN=a\\,b", "CN=a\\,b", true),
            ("CN=a\\,b", "CN=a,B=b", false),
        ];
        for (a, b, same) in cases {
            let (a_parsed, b_parsed) = (Subject::parse(a).unwrap(), Subject::parse(b).unwrap());
            assert_eq!(a_parsed == b_parsed, same, "{a} vs {b}");
        }
    }

    #[test]
    fn bad_subjects_are_refused_with_a_reason() {
        for (text, needle) in [
            ("", "empty subject"),
            ("billing", "not TYPE=value"),
            ("CN=", "empty value"),
            ("C N=x", "not an attribute type"),
            ("CN=a,CN=a", "twice"),
            ("CN=a\\b", "no escape"),
        ] {
            let err = Subject::parse(text).unwrap_err();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn a_certificate_subject_matches_its_written_form() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "acme");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "billing, eu");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let subject = Subject::of_certificate(cert.der()).unwrap();
        assert_eq!(subject, Subject::parse("CN=billing\\, eu, O=acme").unwrap());
        assert_eq!(
            Subject::parse(&subject.to_string()).unwrap(),
            subject,
            "{subject}"
        );
        assert!(Subject::of_certificate(b"not a certificate").is_err());
    }
}
