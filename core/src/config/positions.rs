//! Where in the file a problem is: serde's error paths and a config's
//! `FieldIssue` fields mapped onto YAML positions.

use super::yaml::{Node, PathSegment, Pos};

/// The position and dotted path of a serde error inside `body`.
pub(super) fn error_position(
    body: &Node,
    path: &[PathSegment],
    message: &str,
    prefix: &str,
) -> (Pos, String) {
    let mut dotted = prefix.to_string();
    for seg in path {
        match seg {
            PathSegment::Key(k) => {
                dotted.push('.');
                dotted.push_str(k);
            }
            PathSegment::Index(i) => dotted.push_str(&format!("[{i}]")),
        }
    }
    let mut pos = body.locate(path);
    // serde names an unknown field in its message; the path may or may not
    // end with it. Point at the key itself.
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some(field) = rest.split('`').next()
    {
        let parent_path = match path.last() {
            Some(PathSegment::Key(k)) if k == field => &path[..path.len() - 1],
            _ => {
                dotted.push('.');
                dotted.push_str(field);
                path
            }
        };
        let mut parent = body;
        for seg in parent_path {
            if let PathSegment::Key(k) = seg
                && let Some(n) = parent.get(k)
            {
                parent = n;
            }
        }
        if let Some(k) = parent.key(field) {
            pos = k.pos;
        }
    }
    (pos, dotted)
}

/// Where `field` (`targets[0].v3`; empty: the component itself) is in
/// `body`; the component's name when the field is not in the file (a
/// default that failed a check).
pub(super) fn issue_position(body: &Node, name_node: &Node, field: &str) -> Pos {
    if field.is_empty() {
        return name_node.pos;
    }
    // `targets[0].v3` → Key(targets), Index(0), Key(v3).
    let mut segs: Vec<PathSegment> = Vec::new();
    for part in field.split('.') {
        let mut pieces = part.split('[');
        segs.push(PathSegment::Key(pieces.next().unwrap_or_default().to_string()));
        for idx in pieces {
            if let Ok(i) = idx.trim_end_matches(']').parse() {
                segs.push(PathSegment::Index(i));
            }
        }
    }
    if segs.len() == 1 && body.key(field).is_some() {
        body.get(field).map_or(name_node.pos, |n| n.pos)
    } else {
        let p = body.locate(&segs);
        if p == body.pos { name_node.pos } else { p }
    }
}
