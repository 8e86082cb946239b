//! Request bodies: strict about types (the error names the field), lenient about unknown
//! fields (ignored with a warning naming them, as Cloud Hypervisor does and kata relies on).

use serde::de::DeserializeOwned;

use crate::config::ConfigError;

/// Parses `body` as JSON into `T`; returns the value and the paths of ignored fields.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<(T, Vec<String>), ConfigError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ConfigError::new("body", "a JSON body is required"));
    }
    let mut ignored = Vec::new();
    let mut json = serde_json::Deserializer::from_slice(body);
    let mut on_ignored = |path: serde_ignored::Path<'_>| ignored.push(path.to_string());
    let tracked = serde_ignored::Deserializer::new(&mut json, &mut on_ignored);
    let value: T = serde_path_to_error::deserialize(tracked).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = if path == "." || path.is_empty() {
            "body".to_string()
        } else {
            path
        };
        ConfigError::new(&field, strip_position(&inner.to_string()))
    })?;
    json.end()
        .map_err(|e| ConfigError::new("body", strip_position(&e.to_string())))?;
    Ok((value, ignored))
}

/// serde_json appends "at line 1 column 42"; the field path already says where.
fn strip_position(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::VmConfig;

    #[test]
    fn names_wrong_types_and_collects_unknown_fields() {
        let e =
            parse::<VmConfig>(br#"{"cpus": {"boot_vcpus": "two", "max_vcpus": 2}}"#).unwrap_err();
        assert_eq!(e.field, "cpus.boot_vcpus");
        assert!(e.reason.contains("invalid type"), "{}", e.reason);

        let (c, ignored) = parse::<VmConfig>(
            br#"{"cpus": {"boot_vcpus": 2, "max_vcpus": 2, "kvm_hyperv": false}, "memory": {"size": 1048576}, "tdx": null}"#,
        )
        .unwrap();
        assert_eq!(c.cpus.boot_vcpus, 2);
        assert_eq!(
            ignored,
            vec!["cpus.kvm_hyperv".to_string(), "tdx".to_string()]
        );
    }

    #[test]
    fn rejects_malformed_json_and_trailing_garbage() {
        assert_eq!(parse::<VmConfig>(b"{\"cpus\": ").unwrap_err().field, "body");
        assert_eq!(parse::<VmConfig>(b"{} {}").unwrap_err().field, "body");
        assert_eq!(parse::<VmConfig>(b"  ").unwrap_err().field, "body");
        let e = parse::<VmConfig>(br#"{"memory": {"size": -1}}"#).unwrap_err();
        assert_eq!(e.field, "memory.size");
    }
}
