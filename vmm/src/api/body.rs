//! Request bodies: strict about types (the error names the field), lenient about unknown
//! fields (ignored with a warning naming them, as Cloud Hypervisor does and kata relies on).

use serde::de::DeserializeOwned;

use crate::config::ConfigError;

/// Parses `body` as JSON into `T`; returns the value and the paths of ignored fields.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<(T, Vec<String>), ConfigError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Err(ConfigError::new("body", "a JSON body is required")),
        // serde would also accept a struct written as an array; no client means that.
        Some(b'{') => {}
        Some(_) => return Err(ConfigError::new("body", "must be a JSON object")),
    }
    let mut ignored = Vec::new();
    let mut json = serde_json::Deserializer::from_slice(body);
    let mut on_ignored = |path: serde_ignored::Path<'_>| ignored.push(path.to_string());
    let tracked = serde_ignored::Deserializer::new(&mut json, &mut on_ignored);
    let value: T = serde_path_to_error::deserialize(tracked).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // Broken JSON is the body's fault wherever the parser happened to be.
        let malformed = matches!(
            inner.classify(),
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof
        );
        let reason = strip_position(&inner.to_string());
        let field = if malformed || path == "." || path.is_empty() {
            "body".to_string()
        } else {
            path
        };
        // serde reports a missing field at its parent's path; name the field itself.
        let field = match missing_field(&reason) {
            Some(name) if field == "body" => name.to_string(),
            Some(name) => format!("{field}.{name}"),
            None => field,
        };
        ConfigError::new(&field, reason)
    })?;
    json.end()
        .map_err(|e| ConfigError::new("body", strip_position(&e.to_string())))?;
    Ok((value, ignored))
}

fn missing_field(reason: &str) -> Option<&str> {
    reason.strip_prefix("missing field `")?.split('`').next()
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
        assert_eq!(parse::<VmConfig>(b"[1, 2]").unwrap_err().field, "body");
        let e = parse::<VmConfig>(br#"{"memory": {"hotplug_size": 0}}"#).unwrap_err();
        assert_eq!(e.field, "memory.size");
        let e = parse::<VmConfig>(br#"{"memory": {"size": -1}}"#).unwrap_err();
        assert_eq!(e.field, "memory.size");
    }
}
