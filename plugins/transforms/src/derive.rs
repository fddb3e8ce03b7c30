//! Derived columns for `select`: a condition (a boolean column) or one
//! arithmetic operation between columns and numbers.
//!
//! ```text
//! is_web:  "protocol == 6 and dst_port in [80, 443]"   → Boolean
//! kbytes:  "bytes / 1000"                              → Float64 (division)
//! total:   "bytes + bytes_raw"                         → UInt64 (unsigned + unsigned)
//! ```
//!
//! `+`, `-` and `*` give `UInt64` when both sides are unsigned, `Int64` when
//! an integer is signed, `Float64` when either is a float; `/` always gives
//! `Float64`. Integer overflow fails the batch (counted as `plugin_error`)
//! rather than wrapping silently.

use std::sync::Arc;

use arrow::array::{ArrayRef, Datum, RecordBatch, Scalar};
use arrow::compute::kernels::numeric;
use arrow::datatypes::{DataType, SchemaRef};

use crate::filter::{Condition, ExprError, tokens};

/// A compiled derived column.
pub enum Derived {
    /// A boolean column.
    Condition(Condition),
    /// `left op right`, computed in `ty`.
    Arith { left: Operand, op: char, right: Operand, ty: DataType },
}

/// One side of an arithmetic operation.
pub enum Operand {
    /// A column, by index.
    Column(usize),
    /// A number, already of the result type.
    Number(ArrayRef),
}

fn kind(ty: &DataType) -> Option<u8> {
    match ty {
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => Some(0),
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => Some(1),
        DataType::Float32 | DataType::Float64 => Some(2),
        _ => None,
    }
}

impl Derived {
    /// Compiles `text` against `schema`; returns the column's type too.
    pub fn compile(text: &str, schema: &SchemaRef) -> Result<(Self, DataType), ExprError> {
        let toks = tokens(text)?;
        let is_arith = toks.len() == 3 && matches!(toks[1].0.as_str(), "+" | "-" | "*" | "/");
        if !is_arith {
            return Ok((Self::Condition(Condition::compile(text, schema)?), DataType::Boolean));
        }
        let side =
            |(t, number, col): &(String, bool, usize)| -> Result<(Option<usize>, u8, String), ExprError> {
                if *number {
                    let k = if t.contains('.') || t.contains('e') {
                        2
                    } else if t.starts_with('-') {
                        1
                    } else {
                        0
                    };
                    return Ok((None, k, t.clone()));
                }
                let i = schema.index_of(t).map_err(|_| {
                    let names = schema.fields().iter().map(|f| f.name().as_str());
                    ExprError {
                        column: *col,
                        message: format!(
                            "there is no column `{t}`{}",
                            spillway_core::config::did_you_mean(t, names)
                        ),
                    }
                })?;
                let k = kind(schema.field(i).data_type()).ok_or_else(|| ExprError {
                    column: *col,
                    message: format!("`{t}` is {}, not a number", schema.field(i).data_type()),
                })?;
                Ok((Some(i), k, t.clone()))
            };
        let (l, r) = (side(&toks[0])?, side(&toks[2])?);
        let op = toks[1].0.chars().next().unwrap_or('+');
        let ty = if op == '/' || l.1 == 2 || r.1 == 2 {
            DataType::Float64
        } else if l.1 == 1 || r.1 == 1 {
            DataType::Int64
        } else {
            DataType::UInt64
        };
        let operand = |(i, _, text): (Option<usize>, u8, String), at: usize| -> Result<Operand, ExprError> {
            match i {
                Some(i) => Ok(Operand::Column(i)),
                None => {
                    let lit: ArrayRef = match text.parse::<i64>() {
                        Ok(v) => Arc::new(arrow::array::Int64Array::from(vec![v])),
                        Err(_) => {
                            Arc::new(arrow::array::Float64Array::from(vec![text.parse::<f64>().map_err(
                                |_| ExprError { column: at, message: format!("`{text}` is not a number") },
                            )?]))
                        }
                    };
                    let opts = arrow::compute::CastOptions { safe: false, ..Default::default() };
                    arrow::compute::cast_with_options(&lit, &ty, &opts)
                        .map(Operand::Number)
                        .map_err(|_| ExprError { column: at, message: format!("`{text}` does not fit {ty}") })
                }
            }
        };
        let left = operand(l, toks[0].2)?;
        let right = operand(r, toks[2].2)?;
        Ok((Self::Arith { left, op, right, ty: ty.clone() }, ty))
    }

    /// The column for `batch`.
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<ArrayRef, arrow::error::ArrowError> {
        match self {
            Self::Condition(c) => Ok(Arc::new(c.evaluate(batch)?)),
            Self::Arith { left, op, right, ty } => {
                let datum = |o: &Operand| -> Result<Box<dyn Datum>, arrow::error::ArrowError> {
                    Ok(match o {
                        Operand::Column(i) => Box::new(arrow::compute::cast(batch.column(*i), ty)?),
                        Operand::Number(n) => Box::new(Scalar::new(n.clone())),
                    })
                };
                let (l, r) = (datum(left)?, datum(right)?);
                match op {
                    '+' => numeric::add(l.as_ref(), r.as_ref()),
                    '-' => numeric::sub(l.as_ref(), r.as_ref()),
                    '*' => numeric::mul(l.as_ref(), r.as_ref()),
                    _ => numeric::div(l.as_ref(), r.as_ref()),
                }
            }
        }
    }
}
