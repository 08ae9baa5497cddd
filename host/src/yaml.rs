//! Reading Kubernetes YAML (multi-document) and writing it back, with errors naming the file.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Why a YAML file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML.
    #[error("{}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
}

/// Parses every document of a YAML (or JSON) text; empty documents are skipped.
///
/// # Errors
/// [`Error::Parse`] with the parser's located message.
pub fn parse_documents(text: &str, path: &Path) -> Result<Vec<Value>, Error> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| Error::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// Parses like [`parse_documents`], but as kubectl reads YAML: a key repeated in a mapping is
/// accepted, the last value winning, and the repetition is returned as a warning.
///
/// # Errors
/// [`Error::Parse`] for anything else that is not valid YAML.
pub(crate) fn parse_documents_lenient(
    text: &str,
    path: &Path,
) -> Result<(Vec<Value>, Option<String>), Error> {
    match serde_saphyr::from_multiple::<Value>(text) {
        Ok(docs) => Ok((docs.into_iter().filter(|d| !d.is_null()).collect(), None)),
        Err(e) if e.to_string().to_lowercase().contains("duplicate") => {
            let options =
                serde_saphyr::options! { duplicate_keys: serde_saphyr::DuplicateKeyPolicy::LastWins };
            let docs: Vec<Value> =
                serde_saphyr::from_multiple_with_options(text, options).map_err(|e| Error::Parse {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?;
            let text = e.to_string();
            let first_line = text.lines().next().unwrap_or_default();
            let first_line = first_line.strip_prefix("error: ").unwrap_or(first_line);
            let first_line = first_line
                .split(", set DuplicateKeyPolicy")
                .next()
                .unwrap_or(first_line);
            Ok((
                docs.into_iter().filter(|d| !d.is_null()).collect(),
                Some(format!(
                    "{}: {first_line} (the last value is used, as kubectl does)",
                    path.display()
                )),
            ))
        }
        Err(e) => Err(Error::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        }),
    }
}

/// Reads every document of a YAML file.
///
/// # Errors
/// [`Error::Read`] or [`Error::Parse`].
pub fn read_documents(path: &Path) -> Result<Vec<Value>, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_documents(&text, path)
}

/// The `.yaml`, `.yml` and `.json` files of a directory in name order (`kubectl apply -f DIR`),
/// its subdirectories' after theirs when `recursive` (`-R`).
///
/// # Errors
/// [`Error::Read`] naming a directory that cannot be listed.
pub(crate) fn files_in(dir: &Path, recursive: bool) -> Result<Vec<PathBuf>, Error> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| Error::Read {
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    let mut out = Vec::new();
    for entry in entries {
        if entry.is_dir() {
            if recursive {
                out.extend(files_in(&entry, recursive)?);
            }
        } else if matches!(
            entry.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(entry);
        }
    }
    Ok(out)
}

/// Reads every document of a file, or of every `.yaml`, `.yml` and `.json` file in a directory
/// (in name order).
///
/// # Errors
/// [`Error::Read`] or [`Error::Parse`] naming the file.
pub(crate) fn read_path(path: &Path) -> Result<Vec<Value>, Error> {
    if !path.is_dir() {
        return read_documents(path);
    }
    let files = files_in(path, false)?;
    let mut docs = Vec::new();
    for file in files {
        docs.extend(read_documents(&file)?);
    }
    Ok(docs)
}

/// Writes one value as a YAML document (no leading `---`).
pub fn to_string(value: &Value) -> String {
    serde_saphyr::to_string(value).unwrap_or_else(|e| format!("# cannot print as YAML: {e}\n"))
}

/// Writes values as a YAML stream, documents separated by `---`.
pub(crate) fn to_stream(values: &[Value]) -> String {
    values.iter().map(to_string).collect::<Vec<_>>().join("---\n")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn documents_round_trip_through_a_stream() {
        let docs = parse_documents("a: 1\n---\n---\nb: [x]\n", Path::new("t.yaml")).unwrap();
        assert_eq!(docs, [json!({ "a": 1 }), json!({ "b": ["x"] })]);
        assert_eq!(
            parse_documents(&to_stream(&docs), Path::new("t.yaml")).unwrap(),
            docs
        );
    }

    #[test]
    fn a_repeated_key_is_accepted_with_a_warning_naming_it_and_the_last_value_wins() {
        let (docs, warning) = parse_documents_lenient("a: 1\nb: 2\na: 3\n", Path::new("dup.yaml")).unwrap();
        assert_eq!(docs, [json!({ "a": 3, "b": 2 })]);
        let warning = warning.expect("a warning");
        assert!(
            warning.starts_with("dup.yaml: ") && warning.contains('a'),
            "{warning}"
        );
        assert!(parse_documents("a: 1\na: 3\n", Path::new("dup.yaml")).is_err());
    }

    #[test]
    fn a_parse_error_names_the_file_and_line() {
        let err = parse_documents("a: [1, 2\nb: c\n", Path::new("bad.yaml")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("bad.yaml: ") && text.contains("line 2"),
            "{text}"
        );
    }
}
