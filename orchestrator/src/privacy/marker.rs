//! The in-band marker of a personal value, and the walks over documents
//! that find it.

use serde_json::{Map, Value};

use crate::definition::model::Field;

/// The key of a marked personal value.
pub const PERSONAL: &str = "$personal";
/// The key of its declared type (`id_number`, `phone`, `string` …).
pub const TYPE: &str = "$type";
/// The key of a value sealed at rest.
pub const SEALED: &str = "$sealed";
/// The key of a value whose case key was erased.
pub const ERASED: &str = "$erased";

/// Marks the values of `fields` declared personal. A value already marked
/// (or absent, or null) is left as it is.
pub fn mark(fields: &[Field], data: &mut Map<String, Value>) {
    for field in fields.iter().filter(|f| f.personal) {
        if let Some(value) = data.get_mut(&field.name) {
            if value.is_null() || is_marker(value) {
                continue;
            }
            let mut marked = Map::new();
            marked.insert(PERSONAL.to_owned(), value.take());
            marked.insert(TYPE.to_owned(), Value::from(field.ty.name()));
            *value = Value::Object(marked);
        }
    }
}

/// Whether `value` is one of the markers: personal, sealed or erased.
pub fn is_marker(value: &Value) -> bool {
    value.as_object().is_some_and(|o| {
        o.contains_key(PERSONAL) || o.contains_key(SEALED) || o.contains_key(ERASED)
    })
}

/// A marked personal value's value and declared type.
pub fn personal(value: &Value) -> Option<(&Value, Option<&str>)> {
    let object = value.as_object()?;
    let inner = object.get(PERSONAL)?;
    Some((inner, object.get(TYPE).and_then(Value::as_str)))
}

/// Whether `value` is the marker of an erased value.
pub fn is_erased(value: &Value) -> bool {
    value.as_object().is_some_and(|o| o.contains_key(ERASED))
}

/// The value as the engine reads it: a marked value's content; nothing
/// (`Null`) for an erased or still-sealed one.
pub fn plain(value: &Value) -> Value {
    match personal(value) {
        Some((inner, _)) => inner.clone(),
        None if is_marker(value) => Value::Null,
        None => value.clone(),
    }
}

/// Whether `value` holds a personal value in clear anywhere.
pub fn any_personal(value: &Value) -> bool {
    any(value, &|v| personal(v).is_some())
}

/// Whether `value` holds an erased value anywhere.
pub fn any_erased(value: &Value) -> bool {
    any(value, &is_erased)
}

fn any(value: &Value, test: &impl Fn(&Value) -> bool) -> bool {
    test(value)
        || match value {
            Value::Object(map) => map.values().any(|v| any(v, test)),
            Value::Array(items) => items.iter().any(|v| any(v, test)),
            _ => false,
        }
}

/// Replaces every marked value in `value` by the erased marker; returns
/// how many were replaced.
pub fn erase(value: &mut Value) -> usize {
    if personal(value).is_some() || value.as_object().is_some_and(|o| o.contains_key(SEALED)) {
        *value = erased();
        return 1;
    }
    match value {
        Value::Object(map) => map.values_mut().map(erase).sum(),
        Value::Array(items) => items.iter_mut().map(erase).sum(),
        _ => 0,
    }
}

/// The marker of an erased value.
pub fn erased() -> Value {
    let mut m = Map::new();
    m.insert(ERASED.to_owned(), Value::Bool(true));
    Value::Object(m)
}

/// Replaces every marker in `value` with what `show` makes of it: the
/// personal value and its type, or `None` for an erased or sealed one.
pub fn replace_markers(value: &mut Value, show: &impl Fn(Option<(&Value, Option<&str>)>) -> Value) {
    if is_marker(value) {
        *value = show(personal(value));
        return;
    }
    match value {
        Value::Object(map) => map.values_mut().for_each(|v| replace_markers(v, show)),
        Value::Array(items) => items.iter_mut().for_each(|v| replace_markers(v, show)),
        _ => {}
    }
}

/// `value` with every personal value shown in clear and every erased one
/// as null: for those allowed to see personal data.
pub fn revealed(mut value: Value) -> Value {
    replace_markers(&mut value, &|p| p.map_or(Value::Null, |(v, _)| v.clone()));
    value
}

/// `value` with every personal value masked and every erased one as null:
/// for everyone else.
pub fn masked(mut value: Value) -> Value {
    replace_markers(&mut value, &|p| {
        p.map_or(Value::Null, |(v, ty)| super::mask::mask(ty, v))
    });
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use docket_workers::catalog::ValueType;
    use serde_json::json;

    fn field(name: &str, ty: ValueType, personal: bool) -> Field {
        Field {
            name: name.into(),
            title: None,
            ty,
            values: vec![],
            required: false,
            personal,
        }
    }

    #[test]
    fn only_personal_fields_are_marked_once() {
        let fields = [
            field("name", ValueType::String, true),
            field("id", ValueType::IdNumber, true),
            field("category", ValueType::Enum, false),
            field("agent", ValueType::String, true),
        ];
        let mut data =
            json!({"name": "张三", "id": "350502199001011234", "category": "study", "agent": null})
                .as_object()
                .cloned()
                .unwrap_or_default();
        mark(&fields, &mut data);
        let again = data.clone();
        mark(&fields, &mut data);
        assert_eq!(data, again);
        assert_eq!(
            Value::Object(data.clone()),
            json!({
                "name": {"$personal": "张三", "$type": "string"},
                "id": {"$personal": "350502199001011234", "$type": "id_number"},
                "category": "study",
                "agent": null
            })
        );
        assert_eq!(plain(&data["name"]), json!("张三"));
        assert_eq!(plain(&data["category"]), json!("study"));
    }

    #[test]
    fn erasing_leaves_no_personal_value_and_reads_as_nothing() {
        let mut doc = json!({
            "input": {"name": {"$personal": "张三", "$type": "string"}, "category": "study"},
            "events": {"bound": {"data": {"address": {"$sealed": "x"}}}}
        });
        assert_eq!(erase(&mut doc), 2);
        assert_eq!(doc["input"]["name"], erased());
        assert_eq!(plain(&doc["input"]["name"]), Value::Null);
        assert_eq!(doc["input"]["category"], json!("study"));
        assert!(!doc.to_string().contains("张三"));
    }

    #[test]
    fn masked_and_revealed_views() {
        let doc = json!({"input": {
            "name": {"$personal": "张三", "$type": "string"},
            "id": {"$personal": "350502199001011234", "$type": "id_number"},
            "gone": {"$erased": true},
            "category": "study"
        }});
        assert_eq!(
            masked(doc.clone()),
            json!({"input": {"name": "张*", "id": "3505**********1234", "gone": null, "category": "study"}})
        );
        assert_eq!(
            revealed(doc),
            json!({"input": {"name": "张三", "id": "350502199001011234", "gone": null, "category": "study"}})
        );
    }
}
