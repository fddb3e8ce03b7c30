//! `filter`: keep the records for which a condition holds.
//!
//! ```text
//! condition := or
//! or        := and ("or" and)*
//! and       := not ("and" not)*
//! not       := "not" not | "(" condition ")" | test
//! test      := COLUMN OP VALUE                 OP: == = != < <= > >=
//!            | COLUMN "in" "[" VALUE, ... "]"
//!            | COLUMN "in" ADDRESS "/" LENGTH  (prefix; IPv4 or IPv6)
//!            | COLUMN "in" NUMBER ".." NUMBER  (inclusive range)
//!            | COLUMN "is" ["not"] "null"
//! VALUE     := number | 'text' | "text" | IP address
//! ```
//!
//! The condition is parsed and type-checked against the input schema once,
//! when the pipeline is built (errors give the column in the expression),
//! and evaluated a batch at a time with Arrow's comparison kernels. A null
//! compared with anything is unknown, and unknown records are dropped.

use std::net::IpAddr;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, FixedSizeBinaryArray, RecordBatch, StringArray};
use arrow::compute::kernels::cmp;
use arrow::datatypes::{DataType, SchemaRef};
use serde::Deserialize;
use spillway_core::component::{Emitter, Transform, TransformError};
use spillway_core::ledger::DropReason;
use spillway_core::registry::{BuildContext, BuildError, FieldIssue, TransformConfig};
use spillway_core::schema::Addr;

/// Config of the `filter` transform.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// The condition records must meet to be kept, e.g.
    /// `protocol == 6 and dst_port in 1024..65535 and src_addr in 10.0.0.0/8`.
    pub condition: String,
}

impl TransformConfig for FilterConfig {
    fn validate(&self) -> Vec<FieldIssue> {
        match parse(&self.condition) {
            Ok(_) => Vec::new(),
            Err(e) => vec![FieldIssue::new("condition", e.to_string())],
        }
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Vec<FieldIssue>> {
        let ast = parse(&self.condition).map_err(|e| vec![FieldIssue::new("condition", e.to_string())])?;
        compile(&ast, input).map_err(|e| vec![FieldIssue::new("condition", e.to_string())])?;
        Ok(input.clone())
    }

    fn build(&self, _cx: &BuildContext, input: &SchemaRef) -> Result<Box<dyn Transform>, BuildError> {
        let ast = parse(&self.condition).map_err(|e| BuildError(e.to_string()))?;
        let plan = compile(&ast, input).map_err(|e| BuildError(e.to_string()))?;
        Ok(Box::new(Filter { plan }))
    }
}

spillway_core::register_transform! {
    config: FilterConfig,
    name: "filter",
    description: "Keeps records matching a condition (comparisons, and/or/not, lists, prefixes, ranges, nulls).",
    example: "type: filter\ninputs: [flows]\ncondition: \"protocol == 6 and src_addr in 10.0.0.0/8 and dst_port in 1024..65535\"\n",
}

/// A syntax or type error, at a 1-based column of the condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    /// Column in the condition text.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ExprError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at column {} of the expression: {}", self.column, self.message)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Num(String),
    Str(String),
    Op(&'static str),
}

fn lex(s: &str) -> Result<Vec<(Tok, usize)>, ExprError> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let col = i + 1;
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'\'' || c == b'"' {
            let end = s[i + 1..]
                .find(c as char)
                .ok_or(ExprError { column: col, message: "unterminated text".into() })?;
            out.push((Tok::Str(s[i + 1..i + 1 + end].to_string()), col));
            i += end + 2;
        } else if c == b'-' && b.get(i + 1).is_none_or(|d| d.is_ascii_whitespace()) {
            out.push((Tok::Op("-"), col));
            i += 1;
        } else if let Some(op) =
            ["==", "!=", "<=", ">=", "..", "<", ">", "=", "(", ")", "[", "]", ",", "/", "+", "*"]
                .into_iter()
                .find(|op| s[i..].starts_with(op))
        {
            // A ".." right after a number was already taken by the number rule.
            out.push((Tok::Op(op), col));
            i += op.len();
        } else if c.is_ascii_alphanumeric() || c == b'_' || c == b':' {
            // Words, numbers and addresses (10.0.0.1, 2001:db8::1) are one
            // token; a range's ".." ends a number.
            let start = i;
            while i < b.len()
                && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'_' | b':' | b'.'))
                && !s[i..].starts_with("..")
            {
                i += 1;
            }
            let word = &s[start..i];
            if word.chars().next().is_some_and(|c| c.is_ascii_digit()) || word.contains(':') {
                out.push((Tok::Num(word.to_string()), col));
            } else {
                out.push((Tok::Ident(word.to_string()), col));
            }
        } else if c == b'-' && b.get(i + 1).is_some_and(|d| d.is_ascii_digit()) {
            let start = i;
            i += 1;
            while i < b.len() && (b[i].is_ascii_digit() || (b[i] == b'.' && !s[i..].starts_with(".."))) {
                i += 1;
            }
            out.push((Tok::Num(s[start..i].to_string()), col));
        } else {
            return Err(ExprError { column: col, message: format!("unexpected `{}`", c as char) });
        }
    }
    Ok(out)
}

/// A parsed condition.
#[derive(Debug, Clone, PartialEq)]
enum Ast {
    And(Box<Ast>, Box<Ast>),
    Or(Box<Ast>, Box<Ast>),
    Not(Box<Ast>),
    Cmp { column: String, at: usize, op: &'static str, value: (String, usize, bool) },
    InList { column: String, at: usize, values: Vec<(String, usize, bool)> },
    InPrefix { column: String, at: usize, net: ipnet::IpNet },
    InRange { column: String, at: usize, lo: (String, usize), hi: (String, usize) },
    IsNull { column: String, at: usize, negated: bool },
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(t, _)| t)
    }
    fn col(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end, |(_, c)| *c)
    }
    fn err<T>(&self, message: impl Into<String>) -> Result<T, ExprError> {
        Err(ExprError { column: self.col(), message: message.into() })
    }
    fn word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(x)) if x.eq_ignore_ascii_case(w))
    }
    fn op(&self, o: &str) -> bool {
        matches!(self.peek(), Some(Tok::Op(x)) if *x == o)
    }
    fn or(&mut self) -> Result<Ast, ExprError> {
        let mut left = self.and()?;
        while self.word("or") {
            self.pos += 1;
            left = Ast::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }
    fn and(&mut self) -> Result<Ast, ExprError> {
        let mut left = self.not()?;
        while self.word("and") {
            self.pos += 1;
            left = Ast::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }
    fn not(&mut self) -> Result<Ast, ExprError> {
        if self.word("not") {
            self.pos += 1;
            return Ok(Ast::Not(Box::new(self.not()?)));
        }
        if self.op("(") {
            self.pos += 1;
            let inner = self.or()?;
            if !self.op(")") {
                return self.err("expected `)`");
            }
            self.pos += 1;
            return Ok(inner);
        }
        self.test()
    }
    fn value(&mut self) -> Result<(String, usize, bool), ExprError> {
        let col = self.col();
        match self.peek().cloned() {
            Some(Tok::Num(n)) => {
                self.pos += 1;
                Ok((n, col, false))
            }
            Some(Tok::Str(s)) => {
                self.pos += 1;
                Ok((s, col, true))
            }
            _ => self.err("expected a number, an address or 'text'"),
        }
    }
    fn test(&mut self) -> Result<Ast, ExprError> {
        let at = self.col();
        let Some(Tok::Ident(column)) = self.peek().cloned() else {
            return self.err("expected a column name");
        };
        self.pos += 1;
        if self.word("is") {
            self.pos += 1;
            let negated = self.word("not");
            if negated {
                self.pos += 1;
            }
            if !self.word("null") {
                return self.err("expected `null`");
            }
            self.pos += 1;
            return Ok(Ast::IsNull { column, at, negated });
        }
        if self.word("in") {
            self.pos += 1;
            if self.op("[") {
                self.pos += 1;
                let mut values = vec![self.value()?];
                while self.op(",") {
                    self.pos += 1;
                    values.push(self.value()?);
                }
                if !self.op("]") {
                    return self.err("expected `,` or `]`");
                }
                self.pos += 1;
                return Ok(Ast::InList { column, at, values });
            }
            let (first, fcol, quoted) = self.value()?;
            if quoted {
                return Err(ExprError {
                    column: fcol,
                    message: "expected a list, a prefix or a range".into(),
                });
            }
            if self.op("/") {
                self.pos += 1;
                let (len, lcol, _) = self.value()?;
                let net = format!("{first}/{len}").parse::<ipnet::IpNet>().map_err(|_| ExprError {
                    column: lcol,
                    message: format!("`{first}/{len}` is not a prefix"),
                })?;
                return Ok(Ast::InPrefix { column, at, net: net.trunc() });
            }
            if self.op("..") {
                self.pos += 1;
                let (hi, hcol, _) = self.value()?;
                return Ok(Ast::InRange { column, at, lo: (first, fcol), hi: (hi, hcol) });
            }
            return self.err("expected `/LENGTH` (a prefix) or `..NUMBER` (a range)");
        }
        let op =
            match self.peek() {
                Some(Tok::Op(o)) if matches!(*o, "==" | "=" | "!=" | "<" | "<=" | ">" | ">=") => {
                    if *o == "=" { "==" } else { o }
                }
                _ => return self.err("expected a comparison (==, !=, <, <=, >, >=), `in` or `is`"),
            };
        self.pos += 1;
        let value = self.value()?;
        Ok(Ast::Cmp { column, at, op, value })
    }
}

fn parse(s: &str) -> Result<Ast, ExprError> {
    let toks = lex(s)?;
    if toks.is_empty() {
        return Err(ExprError { column: 1, message: "the condition is empty".into() });
    }
    let mut p = Parser { toks, pos: 0, end: s.len() + 1 };
    let ast = p.or()?;
    if p.pos < p.toks.len() {
        return p.err("expected `and`, `or` or the end of the condition");
    }
    Ok(ast)
}

/// A compiled condition: columns resolved, literals typed as their columns.
#[derive(Debug)]
enum Plan {
    And(Box<Plan>, Box<Plan>),
    Or(Box<Plan>, Box<Plan>),
    Not(Box<Plan>),
    Cmp { index: usize, op: &'static str, scalar: ArrayRef },
    Prefix { index: usize, net: Addr, mask: [u8; 16] },
    IsNull { index: usize, negated: bool },
}

fn scalar(v: &(String, usize, bool), ty: &DataType) -> Result<ArrayRef, ExprError> {
    let (text, col, quoted) = v;
    let bad = |m: String| ExprError { column: *col, message: m };
    if *ty == spillway_core::schema::address_type() {
        let ip: IpAddr = text.parse().map_err(|_| bad(format!("`{text}` is not an address")))?;
        let arr = FixedSizeBinaryArray::try_from_iter([Addr::from(ip)].into_iter())
            .map_err(|e| bad(e.to_string()))?;
        return Ok(Arc::new(arr));
    }
    match ty {
        DataType::Utf8 => Ok(Arc::new(StringArray::from(vec![text.as_str()]))),
        t if t.is_numeric() => {
            if *quoted {
                return Err(bad(format!("`{text}` is text; the column is {t}")));
            }
            let lit: ArrayRef = if let Ok(i) = text.parse::<i64>() {
                Arc::new(arrow::array::Int64Array::from(vec![i]))
            } else if let Ok(f) = text.parse::<f64>() {
                Arc::new(arrow::array::Float64Array::from(vec![f]))
            } else {
                return Err(bad(format!("`{text}` is not a number")));
            };
            let opts = arrow::compute::CastOptions { safe: false, ..Default::default() };
            arrow::compute::cast_with_options(&lit, t, &opts)
                .map_err(|_| bad(format!("`{text}` does not fit the column's type {t}")))
        }
        other => Err(bad(format!("cannot compare a {other} column"))),
    }
}

fn compile(ast: &Ast, schema: &SchemaRef) -> Result<Plan, ExprError> {
    let column = |name: &str, at: usize| -> Result<(usize, DataType), ExprError> {
        schema.index_of(name).map(|i| (i, schema.field(i).data_type().clone())).map_err(|_| {
            let names = schema.fields().iter().map(|f| f.name().as_str());
            ExprError {
                column: at,
                message: format!(
                    "there is no column `{name}`{}",
                    spillway_core::config::did_you_mean(name, names)
                ),
            }
        })
    };
    Ok(match ast {
        Ast::And(a, b) => Plan::And(Box::new(compile(a, schema)?), Box::new(compile(b, schema)?)),
        Ast::Or(a, b) => Plan::Or(Box::new(compile(a, schema)?), Box::new(compile(b, schema)?)),
        Ast::Not(a) => Plan::Not(Box::new(compile(a, schema)?)),
        Ast::Cmp { column: c, at, op, value } => {
            let (index, ty) = column(c, *at)?;
            if ty == spillway_core::schema::address_type() && !matches!(*op, "==" | "!=") {
                return Err(ExprError {
                    column: value.1,
                    message: "addresses compare with ==, != or `in` a prefix".into(),
                });
            }
            Plan::Cmp { index, op, scalar: scalar(value, &ty)? }
        }
        Ast::InList { column: c, at, values } => {
            let (index, ty) = column(c, *at)?;
            let mut plan: Option<Plan> = None;
            for v in values {
                let p = Plan::Cmp { index, op: "==", scalar: scalar(v, &ty)? };
                plan = Some(match plan {
                    None => p,
                    Some(prev) => Plan::Or(Box::new(prev), Box::new(p)),
                });
            }
            plan.expect("a list has at least one value")
        }
        Ast::InPrefix { column: c, at, net } => {
            let (index, ty) = column(c, *at)?;
            if ty != spillway_core::schema::address_type() {
                return Err(ExprError { column: *at, message: format!("`{c}` is {ty}, not an address") });
            }
            // IPv4 prefixes apply to the v4-mapped form: 96 more bits.
            let (addr, len) = match net {
                ipnet::IpNet::V4(n) => (Addr::from(IpAddr::V4(n.network())), 96 + n.prefix_len() as u32),
                ipnet::IpNet::V6(n) => (Addr::from(IpAddr::V6(n.network())), n.prefix_len() as u32),
            };
            let mut mask = [0u8; 16];
            for (i, m) in mask.iter_mut().enumerate() {
                let bits = len.saturating_sub(i as u32 * 8).min(8);
                *m = if bits == 0 { 0 } else { 0xffu8 << (8 - bits) };
            }
            Plan::Prefix { index, net: addr, mask }
        }
        Ast::InRange { column: c, at, lo, hi } => {
            let (index, ty) = column(c, *at)?;
            if !ty.is_numeric() {
                return Err(ExprError {
                    column: *at,
                    message: format!("`{c}` is {ty}; ranges need a number column"),
                });
            }
            let lo = scalar(&(lo.0.clone(), lo.1, false), &ty)?;
            let hi = scalar(&(hi.0.clone(), hi.1, false), &ty)?;
            Plan::And(
                Box::new(Plan::Cmp { index, op: ">=", scalar: lo }),
                Box::new(Plan::Cmp { index, op: "<=", scalar: hi }),
            )
        }
        Ast::IsNull { column: c, at, negated } => {
            Plan::IsNull { index: column(c, *at)?.0, negated: *negated }
        }
    })
}

fn eval(plan: &Plan, batch: &RecordBatch) -> Result<BooleanArray, arrow::error::ArrowError> {
    Ok(match plan {
        Plan::And(a, b) => arrow::compute::and_kleene(&eval(a, batch)?, &eval(b, batch)?)?,
        Plan::Or(a, b) => arrow::compute::or_kleene(&eval(a, batch)?, &eval(b, batch)?)?,
        Plan::Not(a) => arrow::compute::not(&eval(a, batch)?)?,
        Plan::Cmp { index, op, scalar } => {
            let col = batch.column(*index);
            let s = arrow::array::Scalar::new(scalar.clone());
            match *op {
                "==" => cmp::eq(col, &s)?,
                "!=" => cmp::neq(col, &s)?,
                "<" => cmp::lt(col, &s)?,
                "<=" => cmp::lt_eq(col, &s)?,
                ">" => cmp::gt(col, &s)?,
                _ => cmp::gt_eq(col, &s)?,
            }
        }
        Plan::Prefix { index, net, mask } => {
            let col = batch.column(*index).as_fixed_size_binary();
            let values: Vec<Option<bool>> = (0..col.len())
                .map(|i| {
                    (!col.is_null(i)).then(|| {
                        col.value(i).iter().zip(mask).zip(net.octets()).all(|((v, m), n)| v & m == *n)
                    })
                })
                .collect();
            BooleanArray::from(values)
        }
        Plan::IsNull { index, negated } => {
            let col = batch.column(*index);
            if *negated { arrow::compute::is_not_null(col)? } else { arrow::compute::is_null(col)? }
        }
    })
}

/// A condition compiled against a schema, for use by other transforms
/// (`select`'s derived columns).
pub struct Condition(Plan);

impl Condition {
    /// Parses and type-checks `text` against `schema`.
    pub fn compile(text: &str, schema: &SchemaRef) -> Result<Self, ExprError> {
        Ok(Self(compile(&parse(text)?, schema)?))
    }

    /// The condition's value on every row (null where unknown).
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<BooleanArray, arrow::error::ArrowError> {
        eval(&self.0, batch)
    }
}

/// The tokens of an expression, for `select`'s arithmetic.
pub(crate) fn tokens(text: &str) -> Result<Vec<(String, bool, usize)>, ExprError> {
    Ok(lex(text)?
        .into_iter()
        .map(|(t, c)| match t {
            Tok::Ident(w) => (w, false, c),
            Tok::Num(n) => (n, true, c),
            Tok::Str(s) => (format!("'{s}'"), false, c),
            Tok::Op(o) => (o.to_string(), false, c),
        })
        .collect())
}

struct Filter {
    plan: Plan,
}

impl Transform for Filter {
    fn process(&mut self, batch: spillway_core::Batch, out: &mut Emitter) -> Result<(), TransformError> {
        let fail = |e: arrow::error::ArrowError| TransformError {
            reason: DropReason::PluginError,
            message: e.to_string(),
        };
        let keep = eval(&self.plan, &batch.data).map_err(fail)?;
        let kept = arrow::compute::filter_record_batch(&batch.data, &keep).map_err(fail)?;
        out.dropped(DropReason::Filtered, (batch.rows() - kept.num_rows()) as u64, &"the condition is false");
        if kept.num_rows() > 0 {
            out.push(batch.with_data(kept));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(cond: &str) -> ExprError {
        let schema = spillway_core::schema::flow_schema();
        match parse(cond) {
            Err(e) => e,
            Ok(ast) => compile(&ast, &schema).expect_err("expected an error"),
        }
    }

    fn batch() -> RecordBatch {
        use arrow::array::UInt16Array;
        use arrow::datatypes::{Field, Schema};
        let addrs: Vec<Option<Addr>> =
            ["10.1.2.3", "192.168.0.1", "2001:db8::5", "2001:db9::1", "", "10.255.0.0"]
                .iter()
                .map(|a| a.parse::<IpAddr>().ok().map(Addr::from))
                .collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::UInt16, true),
            Field::new("s", DataType::Utf8, true),
            Field::new("a", spillway_core::schema::address_type(), true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(UInt16Array::from(vec![
                    Some(1),
                    Some(80),
                    Some(443),
                    None,
                    Some(1024),
                    Some(65535),
                ])),
                Arc::new(StringArray::from(vec![
                    Some("x"),
                    Some("y"),
                    None,
                    Some("x"),
                    Some("z"),
                    Some("y"),
                ])),
                Arc::new(
                    FixedSizeBinaryArray::try_from_sparse_iter_with_size(addrs.into_iter(), 16).unwrap(),
                ),
            ],
        )
        .unwrap()
    }

    /// Which of the six rows a condition keeps (unknown counts as not kept).
    fn keeps(cond: &str) -> Vec<usize> {
        let b = batch();
        let plan = compile(&parse(cond).unwrap(), &b.schema()).unwrap();
        let r = eval(&plan, &b).unwrap();
        (0..r.len()).filter(|&i| r.is_valid(i) && r.value(i)).collect()
    }

    #[test]
    fn truth_tables_for_every_operator() {
        assert_eq!(keeps("n == 80"), vec![1]);
        assert_eq!(keeps("n = 80"), vec![1]);
        assert_eq!(keeps("n != 80"), vec![0, 2, 4, 5]);
        assert_eq!(keeps("n < 443"), vec![0, 1]);
        assert_eq!(keeps("n <= 443"), vec![0, 1, 2]);
        assert_eq!(keeps("n > 443"), vec![4, 5]);
        assert_eq!(keeps("n >= 443"), vec![2, 4, 5]);
        assert_eq!(keeps("n in [1, 443, 9]"), vec![0, 2]);
        assert_eq!(keeps("n in 80..1024"), vec![1, 2, 4]);
        assert_eq!(keeps("n is null"), vec![3]);
        assert_eq!(keeps("n is not null"), vec![0, 1, 2, 4, 5]);
        assert_eq!(keeps("s == 'x'"), vec![0, 3]);
        assert_eq!(keeps("s in [\"y\", 'z']"), vec![1, 4, 5]);
        assert_eq!(keeps("a == 192.168.0.1"), vec![1]);
        assert_eq!(keeps("a in 10.0.0.0/8"), vec![0, 5]);
        assert_eq!(keeps("a in 10.255.0.0/16"), vec![5]);
        assert_eq!(keeps("a in 2001:db8::/32"), vec![2]);
        assert_eq!(keeps("a in ::/0"), vec![0, 1, 2, 3, 5]);
        assert_eq!(keeps("a is null"), vec![4]);
        // and / or / not, with SQL's three-valued logic for nulls.
        assert_eq!(keeps("n > 100 and s == 'y'"), vec![5]);
        assert_eq!(keeps("n == 1 or s == 'z'"), vec![0, 4]);
        assert_eq!(keeps("not n == 80"), vec![0, 2, 4, 5]);
        // Row 4 has no address: `false or unknown` is unknown, and so is its
        // negation, so it is not kept.
        assert_eq!(keeps("not (n == 80 or a in 10.0.0.0/8)"), vec![2]);
        assert_eq!(keeps("n is null or n < 2"), vec![0, 3]);
        assert_eq!(keeps("not a in 2001:db8::/32 and a is not null"), vec![0, 1, 3, 5]);
    }

    #[test]
    fn errors_name_their_column_in_the_condition() {
        assert_eq!(errors("protocl == 6").column, 1);
        assert!(errors("protocl == 6").message.contains("did you mean `protocol`"));
        assert_eq!(errors("protocol == 6 and dst_port >").column, 29);
        assert_eq!(errors("protocol == 300").message, "`300` does not fit the column's type UInt8");
        assert_eq!(errors("src_addr < 10.0.0.1").column, 12);
        assert_eq!(errors("src_addr in 10.0.0.0/33").column, 22);
        assert_eq!(errors("(protocol == 6").message, "expected `)`");
        assert!(errors("bytes in 'x'").message.contains("a list, a prefix or a range"));
        assert!(errors("protocol == 'tcp'").message.contains("is text"));
        assert_eq!(errors("protocol == 6 6").message, "expected `and`, `or` or the end of the condition");
    }
}
