//! Parquet reading: the needed top-level columns only (projection), each row converted to a JSON
//! object so the same field rules as JSONL apply. Strings (incl. large/view/dictionary), integers,
//! floats, booleans, lists and structs are converted; a cell that cannot be converted is a bad
//! record naming its row (0-based) and column; an unreadable file or a missing required column
//! is a [`TaskError::BadFile`].

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type, UInt64Type,
    UInt8Type,
};
use arrow::datatypes::{Float32Type, Float64Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use serde_json::{Map, Value};

use super::io_error;
use crate::TaskError;

/// Calls `f(row, record)` for every row, with the columns among `fields` that exist. Each entry
/// of `required` lists alternatives of which at least one column must exist.
pub fn for_each_row(
    path: &Path,
    fields: &[String],
    required: &[Vec<String>],
    mut f: impl FnMut(u64, Result<Value, TaskError>) -> Result<(), TaskError>,
) -> Result<(), TaskError> {
    let bad_file = |reason: String| TaskError::BadFile {
        path: path.to_path_buf(),
        reason,
    };
    let file = File::open(path).map_err(|e| io_error(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| bad_file(format!("not a readable Parquet file: {e}")))?;
    let schema = builder.schema().clone();
    let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    for alts in required {
        if !alts.iter().any(|a| names.contains(a)) {
            return Err(bad_file(format!(
                "no column `{}` (columns: {})",
                alts.join("` or `"),
                names.join(", ")
            )));
        }
    }
    let indices: Vec<usize> = names
        .iter()
        .enumerate()
        .filter(|(_, n)| fields.contains(n))
        .map(|(i, _)| i)
        .collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(1024)
        .build()
        .map_err(|e| bad_file(e.to_string()))?;
    let mut row: u64 = 0;
    for batch in reader {
        let batch = batch.map_err(|e| bad_file(format!("read error near row {row}: {e}")))?;
        for i in 0..batch.num_rows() {
            let rec = row_to_json(&batch, i).map_err(|(field, reason)| TaskError::BadRecord {
                path: path.to_path_buf(),
                unit: "row",
                line: row,
                field,
                reason,
            });
            f(row, rec)?;
            row += 1;
        }
    }
    Ok(())
}

fn row_to_json(batch: &RecordBatch, i: usize) -> Result<Value, (String, String)> {
    let mut obj = Map::new();
    for (field, col) in batch.schema().fields().iter().zip(batch.columns()) {
        let v = cell(col.as_ref(), i).map_err(|e| (field.name().clone(), e))?;
        obj.insert(field.name().clone(), v);
    }
    Ok(Value::Object(obj))
}

/// One cell as JSON (nulls as `Null`).
fn cell(a: &dyn Array, i: usize) -> Result<Value, String> {
    if a.is_null(i) {
        return Ok(Value::Null);
    }
    let num = |x: f64| {
        serde_json::Number::from_f64(x)
            .map(Value::Number)
            .ok_or_else(|| format!("non-finite number {x}"))
    };
    Ok(match a.data_type() {
        DataType::Utf8 => Value::String(a.as_string::<i32>().value(i).to_string()),
        DataType::LargeUtf8 => Value::String(a.as_string::<i64>().value(i).to_string()),
        DataType::Utf8View => Value::String(a.as_string_view().value(i).to_string()),
        DataType::Binary => utf8(a.as_binary::<i32>().value(i))?,
        DataType::LargeBinary => utf8(a.as_binary::<i64>().value(i))?,
        DataType::Boolean => Value::Bool(a.as_boolean().value(i)),
        DataType::Int8 => a.as_primitive::<Int8Type>().value(i).into(),
        DataType::Int16 => a.as_primitive::<Int16Type>().value(i).into(),
        DataType::Int32 => a.as_primitive::<Int32Type>().value(i).into(),
        DataType::Int64 => a.as_primitive::<Int64Type>().value(i).into(),
        DataType::UInt8 => a.as_primitive::<UInt8Type>().value(i).into(),
        DataType::UInt16 => a.as_primitive::<UInt16Type>().value(i).into(),
        DataType::UInt32 => a.as_primitive::<UInt32Type>().value(i).into(),
        DataType::UInt64 => a.as_primitive::<UInt64Type>().value(i).into(),
        DataType::Float32 => num(f64::from(a.as_primitive::<Float32Type>().value(i)))?,
        DataType::Float64 => num(a.as_primitive::<Float64Type>().value(i))?,
        DataType::List(_) => list(a.as_list::<i32>().value(i))?,
        DataType::LargeList(_) => list(a.as_list::<i64>().value(i))?,
        DataType::Struct(fields) => {
            let s = a.as_struct();
            let mut obj = Map::new();
            for (f, col) in fields.iter().zip(s.columns()) {
                obj.insert(f.name().clone(), cell(col.as_ref(), i)?);
            }
            Value::Object(obj)
        }
        DataType::Dictionary(_, _) => {
            let sliced = a.slice(i, 1);
            let strings = arrow::compute::cast(&sliced, &DataType::Utf8)
                .map_err(|e| format!("dictionary column: {e}"))?;
            cell(strings.as_ref(), 0)?
        }
        other => return Err(format!("unsupported column type {other}")),
    })
}

fn utf8(b: &[u8]) -> Result<Value, String> {
    std::str::from_utf8(b)
        .map(|s| Value::String(s.to_string()))
        .map_err(|e| format!("invalid UTF-8 at byte {}", e.valid_up_to()))
}

fn list(values: Arc<dyn Array>) -> Result<Value, String> {
    (0..values.len())
        .map(|j| cell(values.as_ref(), j))
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::source::{self, SourceConfig};
    use crate::TaskError;

    use arrow::array::{
        Array, ArrayRef, Int64Array, ListBuilder, StringArray, StringBuilder, StructArray,
        StructBuilder,
    };
    use arrow::datatypes::{DataType, Field, Fields, Schema};
    use arrow::record_batch::RecordBatch;
    use parquet::arrow::ArrowWriter;

    /// Writes a 4-row file: problem (string), answer (string, row 1 null), id (int), reward_model
    /// (struct {ground_truth}), prompt (list of {role, content} structs).
    fn write_fixture(path: &std::path::Path) {
        let problem: ArrayRef = Arc::new(StringArray::from(vec![
            Some("1+1?"),
            Some("2+2?"),
            Some("3+3?"),
            Some("4+4?"),
        ]));
        let answer: ArrayRef = Arc::new(StringArray::from(vec![
            Some("2"),
            None,
            Some("6"),
            Some("8"),
        ]));
        let id: ArrayRef = Arc::new(Int64Array::from(vec![10, 11, 12, 13]));
        let gt: ArrayRef = Arc::new(StringArray::from(vec!["2", "4", "6", "8"]));
        let rm = StructArray::from(vec![(
            Arc::new(Field::new("ground_truth", DataType::Utf8, false)),
            gt,
        )]);
        let msg_fields = Fields::from(vec![
            Field::new("role", DataType::Utf8, true),
            Field::new("content", DataType::Utf8, true),
        ]);
        let mut chat = ListBuilder::new(StructBuilder::new(
            msg_fields.clone(),
            vec![
                Box::new(StringBuilder::new()),
                Box::new(StringBuilder::new()),
            ],
        ));
        for i in 0..4 {
            let sb = chat.values();
            for (role, content) in [
                ("system", "be brief".to_string()),
                ("user", format!("chat {i}")),
            ] {
                sb.field_builder::<StringBuilder>(0)
                    .unwrap()
                    .append_value(role);
                sb.field_builder::<StringBuilder>(1)
                    .unwrap()
                    .append_value(content);
                sb.append(true);
            }
            chat.append(true);
        }
        let chat: ArrayRef = Arc::new(chat.finish());
        let schema = Arc::new(Schema::new(vec![
            Field::new("problem", DataType::Utf8, true),
            Field::new("answer", DataType::Utf8, true),
            Field::new("id", DataType::Int64, false),
            Field::new("reward_model", rm.data_type().clone(), false),
            Field::new("prompt", chat.data_type().clone(), true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![problem, answer, id, Arc::new(rm), chat],
        )
        .unwrap();
        let mut w =
            ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }

    #[test]
    fn parquet_rows_fields_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train.parquet");
        write_fixture(&path);

        let loaded = source::load(&SourceConfig::for_path(&path)).unwrap();
        assert_eq!(loaded.problems.len(), 3);
        assert_eq!(loaded.problems[0].id, "10");
        assert_eq!(loaded.problems[0].prompt, "1+1?");
        assert_eq!(loaded.skipped.len(), 1);
        assert_eq!(
            loaded.skipped[0].to_string(),
            format!("{}:row 1: field `answer`: missing", path.display())
        );

        let strict = SourceConfig {
            strict: true,
            ..SourceConfig::for_path(&path)
        };
        assert!(matches!(
            source::load(&strict),
            Err(TaskError::BadRecord {
                unit: "row",
                line: 1,
                ..
            })
        ));

        // veRL-style: chat-list prompt and a nested answer inside a struct column.
        let verl = SourceConfig {
            prompt_fields: vec!["prompt".into()],
            answer_field: "reward_model.ground_truth".into(),
            ..SourceConfig::for_path(&path)
        };
        let p = source::load(&verl).unwrap().problems;
        assert_eq!(p.len(), 4);
        assert_eq!(
            (p[1].prompt.as_str(), p[1].answer.as_str()),
            ("chat 1", "4")
        );

        let no_col = SourceConfig {
            answer_field: "solution".into(),
            ..SourceConfig::for_path(&path)
        };
        let e = source::load(&no_col).unwrap_err().to_string();
        assert!(
            e.contains("no column `solution`") && e.contains("train.parquet"),
            "{e}"
        );

        let fake = dir.path().join("fake.parquet");
        std::fs::write(&fake, b"definitely not parquet").unwrap();
        let e = source::load(&SourceConfig::for_path(&fake)).unwrap_err();
        assert!(matches!(e, TaskError::BadFile { .. }), "{e}");
    }
}
