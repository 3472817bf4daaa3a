//! What a role without the right to see personal data is shown instead.

use serde_json::Value;

/// Masks a personal value by its declared type: an ID number keeps its
/// region and last four (`3505**********1234`), a phone number its prefix
/// and last four (`138****5678`), any other text its first character
/// (`张*`). Lists are masked item by item; anything else is hidden.
pub fn mask(ty: Option<&str>, value: &Value) -> Value {
    match value {
        Value::String(text) => Value::String(mask_text(ty, text)),
        Value::Array(items) => Value::Array(items.iter().map(|v| mask(ty, v)).collect()),
        Value::Null => Value::Null,
        _ => Value::String("***".to_owned()),
    }
}

fn mask_text(ty: Option<&str>, text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let (keep_start, keep_end) = match ty {
        Some("id_number") => (4, 4),
        Some("phone") => (3, 4),
        Some("email") => return mask_email(text),
        _ => (1, 0),
    };
    // Short values keep less, so that a mask never gives all of one away.
    if chars.len() <= keep_start + keep_end {
        return chars
            .first()
            .map(|c| format!("{c}{}", "*".repeat(chars.len().saturating_sub(1))))
            .unwrap_or_default();
    }
    let hidden = chars.len() - keep_start - keep_end;
    let start: String = chars[..keep_start].iter().collect();
    let end: String = chars[chars.len() - keep_end..].iter().collect();
    format!("{start}{}{end}", "*".repeat(hidden))
}

fn mask_email(text: &str) -> String {
    match text.split_once('@') {
        Some((local, domain)) => format!("{}@{domain}", mask_text(None, local)),
        None => mask_text(None, text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn masks_as_the_offices_print_them() {
        assert_eq!(
            mask(Some("id_number"), &json!("350502199001011234")),
            json!("3505**********1234")
        );
        assert_eq!(mask(Some("string"), &json!("张三")), json!("张*"));
        assert_eq!(mask(Some("string"), &json!("欧阳娜娜")), json!("欧***"));
        assert_eq!(
            mask(Some("phone"), &json!("13812345678")),
            json!("138****5678")
        );
        assert_eq!(
            mask(Some("email"), &json!("li.lei@example.cn")),
            json!("l*****@example.cn")
        );
        assert_eq!(mask(Some("id_number"), &json!("12345")), json!("1****"));
        assert_eq!(mask(Some("string"), &json!("")), json!(""));
        assert_eq!(mask(None, &json!(42)), json!("***"));
        assert_eq!(mask(None, &json!(["ab", "cd"])), json!(["a*", "c*"]));
    }
}
