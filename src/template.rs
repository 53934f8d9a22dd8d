//! Fills `{{placeholder}}` templates (vm-templates/*.xml). Unknown or unfilled placeholders are errors.

use anyhow::{bail, Result};

/// A value put into a template: text is XML-escaped, a fragment is inserted as is.
pub enum Value<'a> {
    Text(&'a str),
    Fragment(&'a str),
}

pub fn escape_xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// Replaces every `{{key}}` in `template`; every placeholder must have a value and every
/// value must be used, so a renamed placeholder cannot silently produce broken XML.
pub fn render(template: &str, vars: &[(&str, Value)]) -> Result<String> {
    let mut out = String::with_capacity(template.len() + 1024);
    let mut used = vec![false; vars.len()];
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            bail!(
                "unterminated placeholder near {:?}",
                &rest[start..rest.len().min(start + 30)]
            );
        };
        let key = &after[..end];
        let Some(i) = vars.iter().position(|(k, _)| *k == key) else {
            bail!("template placeholder {{{{{key}}}}} has no value");
        };
        used[i] = true;
        match &vars[i].1 {
            Value::Text(t) => out.push_str(&escape_xml(t)),
            Value::Fragment(f) => out.push_str(f),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    if let Some(i) = used.iter().position(|u| !u) {
        bail!(
            "value for {:?} given but the template has no such placeholder",
            vars[i].0
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_escapes_and_checks() {
        let t = "<a x='{{x}}'>{{frag}}</a>";
        let out = render(
            t,
            &[
                ("x", Value::Text("1 & 'q'")),
                ("frag", Value::Fragment("<b/>")),
            ],
        )
        .unwrap();
        assert_eq!(out, "<a x='1 &amp; &apos;q&apos;'><b/></a>");

        let err = render(t, &[("x", Value::Text("1"))]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "template placeholder {{frag}} has no value"
        );

        let err = render("{{x}}", &[("x", Value::Text("1")), ("y", Value::Text("2"))]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "value for \"y\" given but the template has no such placeholder"
        );

        assert!(render("{{x", &[]).is_err());
    }
}
