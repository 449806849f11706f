//! Settings layers: each layer (defaults, the config file, the
//! environment, flags) is a TOML table of one shape, and a later layer's
//! values replace an earlier one's, key by key, section by section.
//!
//! The shape has a section per face (`[amqp] frame-max = 131072`). The flat
//! spelling every key had before sections (`amqp-frame-max`), which is also
//! the flag's name, keeps working: [`normalize`] moves a key that begins
//! with a face's name (or its TLS listener's name: `amqps-listen`) into
//! that face's section.

use std::path::Path;

use crate::error::ServerError;
use crate::faces::FACES;

pub type Table = toml::Table;

/// The config file as a layer.
pub fn from_file(path: &Path) -> Result<Table, ServerError> {
    let error = |detail: String| ServerError::Config {
        path: path.to_owned(),
        detail,
    };
    let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    let table: Table = toml::from_str(&text).map_err(|e| error(e.to_string()))?;
    let table = normalize(table).map_err(error)?;
    // Read on its own too, so that a wrong key or value names this file
    // (and its line: the merged table has no positions).
    if let Err(e) = super::Settings::from_table(table.clone()) {
        let detail = e.to_string().trim_end().to_owned();
        return Err(error(match locate(&text, &detail) {
            Some(at) => format!(
                "line {}, column {}: `{}`: {detail}",
                at.line, at.column, at.key
            ),
            None => detail,
        }));
    }
    Ok(table)
}

/// A setting's place in a config file.
#[derive(Debug, PartialEq, Eq)]
struct Place {
    line: usize,
    column: usize,
    /// The key as the file spells it (flat or in its section).
    key: String,
}

/// Where the setting that a settings error names is in `text`. Errors of
/// the merged table end with "in `section.key`" (or "in `section`" for an
/// unknown key, which the message names); a face key may be in its
/// section or spelled flat.
fn locate(text: &str, error: &str) -> Option<Place> {
    let detail = error.trim_end();
    let (message, within) = match detail.rsplit_once("\nin `") {
        Some((m, p)) => (m, p.trim_end_matches('`')),
        None => (detail, ""),
    };
    let mut path: Vec<&str> = within.split('.').filter(|p| !p.is_empty()).collect();
    if let Some((unknown, _)) = message
        .strip_prefix("unknown field `")
        .and_then(|r| r.split_once('`'))
    {
        path.push(unknown);
    }
    let doc = toml::de::DeTable::parse(text).ok()?;
    let doc = doc.get_ref();
    let found = match path.as_slice() {
        [key] => doc
            .get_key_value(*key)
            .map(|(k, _)| (k.span(), (*key).to_owned())),
        [section, key, ..] => {
            let nested = doc.get(*section).and_then(|v| match v.get_ref() {
                toml::de::DeValue::Table(t) => t.get_key_value(*key),
                _ => None,
            });
            match nested {
                Some((k, _)) => Some((k.span(), format!("[{section}] {key}"))),
                None => doc.iter().find_map(|(k, _)| {
                    let (face, inner) = section_of(k.get_ref())?;
                    (face == *section && inner == *key).then(|| (k.span(), k.get_ref().to_string()))
                }),
            }
        }
        [] => None,
    };
    let (span, key) = found?;
    let before = text.get(..span.start)?;
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |l| l.chars().count()) + 1;
    Some(Place { line, column, key })
}

/// Where a flat key belongs: (face section, key in it), if it names a face.
fn section_of(key: &str) -> Option<(&'static str, String)> {
    FACES.iter().find_map(|f| {
        if let Some(rest) = key.strip_prefix(f.name).and_then(|r| r.strip_prefix('-')) {
            return (!rest.is_empty()).then(|| (f.name, rest.to_owned()));
        }
        let tls = f.tls_name?;
        let rest = key.strip_prefix(tls)?.strip_prefix('-')?;
        (!rest.is_empty()).then(|| (f.name, format!("tls-{rest}")))
    })
}

/// Moves flat face keys into their sections. A key given both ways in one
/// layer is a mistake to report, not to settle silently.
pub fn normalize(table: Table) -> Result<Table, String> {
    let mut out = Table::new();
    let mut moved: Vec<(&'static str, String, String, toml::Value)> = Vec::new();
    for (key, value) in table {
        match section_of(&key) {
            Some((face, inner)) => moved.push((face, inner, key, value)),
            None => {
                out.insert(key, value);
            }
        }
    }
    for (face, inner, flat, value) in moved {
        let section = out
            .entry(face)
            .or_insert_with(|| toml::Value::Table(Table::new()));
        let Some(section) = section.as_table_mut() else {
            return Err(format!("'{face}' must be a table ([{face}])"));
        };
        if section.contains_key(&inner) {
            return Err(format!(
                "'{flat}' and '{inner}' in [{face}] are the same setting; give it once"
            ));
        }
        section.insert(inner, value);
    }
    Ok(out)
}

/// Lays `over` on `base`: tables merge key by key, anything else replaces.
pub fn merge(base: &mut Table, over: Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> Table {
        toml::from_str(text).expect("toml")
    }

    #[test]
    fn flat_face_keys_move_into_their_sections() {
        let t = normalize(table(
            "amqp-frame-max = 4096\namqps-listen = \"off\"\naws-region = \"eu-west-1\"\n\
             admin-tls-listen = \"off\"\nmax-connections = 5\n[amqp]\nchannel-max = 9\n",
        ))
        .expect("normalize");
        assert_eq!(
            t,
            table(
                "max-connections = 5\n[amqp]\nchannel-max = 9\nframe-max = 4096\n\
                 tls-listen = \"off\"\n[aws]\nregion = \"eu-west-1\"\n[admin]\ntls-listen = \"off\"\n"
            )
        );
        assert!(
            normalize(table("amqp-frame-max = 1\n[amqp]\nframe-max = 2\n"))
                .expect_err("twice")
                .contains("same setting")
        );
        assert!(normalize(table("amqp-listen = \"off\"\namqp = 1\n")).is_err());
    }

    #[test]
    fn a_bad_setting_is_found_where_the_file_has_it() {
        let text = "data-dir = \"/d\"\namqp-frame-maxx = 5\n\n[aws]\nregion = 7\n\n[amqp]\n  channel-maxx = 1\n";
        let err = |t: &str| {
            let t = normalize(toml::from_str(t).expect("toml")).expect("normalize");
            match super::super::Settings::from_table(t) {
                Ok(_) => panic!("accepted"),
                Err(e) => e.to_string(),
            }
        };
        let place = |key: &str, line, column| Place {
            line,
            column,
            key: key.to_owned(),
        };
        // The flat spelling is named as written, not as its section's key.
        let flat = "data-dir = \"/d\"\namqp-frame-maxx = 5\n";
        assert_eq!(
            locate(flat, &err(flat)),
            Some(place("amqp-frame-maxx", 2, 1))
        );
        let nested = "[amqp]\n  channel-maxx = 1\n";
        assert_eq!(
            locate(nested, &err(nested)),
            Some(place("[amqp] channel-maxx", 2, 3))
        );
        let value = "[aws]\nregion = 7\n";
        assert_eq!(
            locate(value, &err(value)),
            Some(place("[aws] region", 2, 1))
        );
        let top = "\n\ndata-dirr = \"/d\"\n";
        assert_eq!(locate(top, &err(top)), Some(place("data-dirr", 3, 1)));
        assert!(err(text).contains("unknown field"));
    }

    #[test]
    fn later_layers_win_key_by_key() {
        let mut base = table(
            "data-dir = \"/a\"\nfsync = \"always\"\n[amqp]\nframe-max = 1\nchannel-max = 2\n",
        );
        merge(
            &mut base,
            table("fsync = \"never\"\n[amqp]\nframe-max = 3\n"),
        );
        assert_eq!(
            base,
            table("data-dir = \"/a\"\nfsync = \"never\"\n[amqp]\nframe-max = 3\nchannel-max = 2\n")
        );
    }
}
