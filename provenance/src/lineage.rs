//! Lineage graphs over several manifests: which dataset was derived from
//! which, by what step. Printed as text for people and as Graphviz DOT.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::manifest::Manifest;

/// A dataset in the graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Manifest root (hex).
    pub root: String,
    /// Label: where the manifest was read from, or "(not given)" for a
    /// parent named by a child but not among the manifests.
    pub label: String,
    /// Source URI and revision, if recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// True when the manifest itself was given.
    pub known: bool,
}

/// An edge parent → child, labelled with the derivation step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edge {
    /// Parent root.
    pub parent: String,
    /// Child root.
    pub child: String,
    /// Step that derived the child.
    pub step: String,
}

/// The lineage graph.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineageGraph {
    /// Nodes, keyed by root.
    pub nodes: Vec<Node>,
    /// Edges.
    pub edges: Vec<Edge>,
}

fn short(root: &str) -> &str {
    root.get(..12).unwrap_or(root)
}

impl LineageGraph {
    /// Build the graph from `(label, manifest)` pairs.
    pub fn from_manifests<'a>(items: impl IntoIterator<Item = (String, &'a Manifest)>) -> Self {
        let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
        let mut edges = Vec::new();
        for (label, m) in items {
            let source = match (&m.metadata.source, &m.metadata.revision) {
                (Some(s), Some(r)) => Some(format!("{s}@{r}")),
                (Some(s), None) => Some(s.clone()),
                (None, Some(r)) => Some(format!("@{r}")),
                (None, None) => None,
            };
            nodes.insert(
                m.root.clone(),
                Node {
                    root: m.root.clone(),
                    label,
                    source,
                    known: true,
                },
            );
            if let Some(l) = &m.lineage {
                for p in &l.parents {
                    edges.push(Edge {
                        parent: p.clone(),
                        child: m.root.clone(),
                        step: l.step.clone(),
                    });
                }
            }
        }
        for e in &edges {
            nodes.entry(e.parent.clone()).or_insert_with(|| Node {
                root: e.parent.clone(),
                label: "(not given)".into(),
                source: None,
                known: false,
            });
        }
        edges.sort_by(|a, b| (&a.parent, &a.child).cmp(&(&b.parent, &b.child)));
        edges.dedup();
        Self {
            nodes: nodes.into_values().collect(),
            edges,
        }
    }

    /// Human text: each dataset, then each derivation.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for n in &self.nodes {
            let src = n
                .source
                .as_deref()
                .map(|x| format!(" [{x}]"))
                .unwrap_or_default();
            let _ = writeln!(s, "{}  {}{src}", short(&n.root), n.label);
        }
        for e in &self.edges {
            let _ = writeln!(
                s,
                "{} --{}--> {}",
                short(&e.parent),
                e.step,
                short(&e.child)
            );
        }
        s
    }

    /// Graphviz DOT.
    pub fn to_dot(&self) -> String {
        let mut s = String::from("digraph lineage {\n  rankdir=LR;\n  node [shape=box];\n");
        for n in &self.nodes {
            let mut label = format!("{}\\n{}", short(&n.root), n.label);
            if let Some(src) = &n.source {
                label.push_str("\\n");
                label.push_str(src);
            }
            let style = if n.known { "" } else { ", style=dashed" };
            let _ = writeln!(s, "  \"{}\" [label={}{style}];", n.root, dot_str(&label));
        }
        for e in &self.edges {
            let _ = writeln!(
                s,
                "  \"{}\" -> \"{}\" [label={}];",
                e.parent,
                e.child,
                dot_str(&e.step)
            );
        }
        s.push_str("}\n");
        s
    }
}

/// A DOT string literal; `\n` sequences built above are kept as line breaks.
fn dot_str(s: &str) -> String {
    let mut out = String::from("\"");
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'n') => {
                chars.next();
                out.push_str("\\n");
            }
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Lineage, Metadata, MANIFEST_SCHEMA};
    use crate::Algorithm;

    fn m(root: u8, parents: &[u8], step: &str) -> Manifest {
        Manifest {
            schema: MANIFEST_SCHEMA.into(),
            algorithm: Algorithm::Blake3,
            root: hex::encode([root; 32]),
            metadata: Metadata {
                source: Some("s3://raw\"x".into()),
                ..Default::default()
            },
            lineage: (!parents.is_empty()).then(|| Lineage {
                parents: parents.iter().map(|p| hex::encode([*p; 32])).collect(),
                step: step.into(),
            }),
            files: vec![],
            exclude: vec![],
        }
    }

    #[test]
    fn graph_text_and_dot() {
        let (raw, dedup, filt) = (m(1, &[], ""), m(2, &[1], "dedup"), m(3, &[2, 9], "filter"));
        let g = LineageGraph::from_manifests([
            ("raw.json".to_string(), &raw),
            ("dedup.json".into(), &dedup),
            ("f.json".into(), &filt),
        ]);
        assert_eq!(g.nodes.len(), 4);
        assert_eq!(g.edges.len(), 3);
        let t = g.to_text();
        assert!(t.contains("010101010101 --dedup--> 020202020202"), "{t}");
        let d = g.to_dot();
        assert!(
            d.contains("-> \"0303") && d.contains("label=\"filter\"") && d.contains("style=dashed"),
            "{d}"
        );
        assert!(d.contains("s3://raw\\\"x"), "{d}");
    }
}
