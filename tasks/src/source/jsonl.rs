//! JSONL reading: one JSON value per line, blank lines skipped, each bad line (invalid UTF-8,
//! invalid JSON) an error naming the file and 1-based line, and reading goes on after it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::io_error;
use crate::TaskError;

/// One parsed line.
#[derive(Clone, Debug, PartialEq)]
pub struct JsonlRecord {
    /// 1-based line number.
    pub line: u64,
    pub value: serde_json::Value,
}

/// Iterator over the records of a JSONL stream.
pub struct JsonlReader<R> {
    reader: R,
    path: PathBuf,
    line: u64,
    buf: Vec<u8>,
}

impl<R: BufRead> JsonlReader<R> {
    /// Reads from `reader`; `path` names the input in error messages ("-" for stdin).
    pub fn new(reader: R, path: impl Into<PathBuf>) -> Self {
        JsonlReader {
            reader,
            path: path.into(),
            line: 0,
            buf: Vec::new(),
        }
    }

    fn bad(&self, reason: String) -> TaskError {
        TaskError::BadRecord {
            path: self.path.clone(),
            unit: "line",
            line: self.line,
            field: "<line>".into(),
            reason,
        }
    }
}

impl<R: BufRead> Iterator for JsonlReader<R> {
    type Item = Result<JsonlRecord, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.buf.clear();
            match self.reader.read_until(b'\n', &mut self.buf) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => return Some(Err(io_error(&self.path, e))),
            }
            self.line += 1;
            let text = match std::str::from_utf8(&self.buf) {
                Ok(t) => t,
                Err(e) => {
                    return Some(Err(
                        self.bad(format!("invalid UTF-8 at byte {}", e.valid_up_to()))
                    ))
                }
            };
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            return Some(match serde_json::from_str(text) {
                Ok(value) => Ok(JsonlRecord {
                    line: self.line,
                    value,
                }),
                Err(e) => Err(self.bad(format!("invalid JSON: {e}"))),
            });
        }
    }
}

/// Opens a JSONL file ("-" reads stdin).
pub fn read_jsonl_values(path: &Path) -> Result<JsonlReader<Box<dyn BufRead>>, TaskError> {
    let reader: Box<dyn BufRead> = if path == Path::new("-") {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let f = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
        Box::new(BufReader::new(f))
    };
    Ok(JsonlReader::new(reader, path))
}

/// Reads an in-memory JSONL text (tests, small inputs).
pub fn jsonl_from_bytes<'a>(bytes: &'a [u8], name: &str) -> JsonlReader<BufReader<&'a [u8]>> {
    JsonlReader::new(BufReader::new(bytes), name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_errors_and_recovery() {
        let data = b"{\"a\":1}\n\n{bad json}\n\xff\xfe\n  {\"a\":2}  \n[1]";
        let out: Vec<_> = jsonl_from_bytes(data, "f.jsonl").collect();
        assert_eq!(out.len(), 5);
        assert_eq!(out[0].as_ref().unwrap().line, 1);
        let e = out[1].as_ref().unwrap_err().to_string();
        assert!(
            e.starts_with("f.jsonl:line 3: field `<line>`: invalid JSON"),
            "{e}"
        );
        let e = out[2].as_ref().unwrap_err().to_string();
        assert_eq!(e, "f.jsonl:line 4: field `<line>`: invalid UTF-8 at byte 0");
        assert_eq!(out[3].as_ref().unwrap().line, 5);
        assert_eq!(out[4].as_ref().unwrap().value, serde_json::json!([1]));
    }
}
