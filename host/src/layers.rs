//! A test of the crate's structure: the modules under `src/` form no cycle. Siblings may use
//! each other one way only, and a module's children never use what their parent defines (a
//! parent is a facade: it declares and re-exports). Paths are read from the source: `use`
//! trees and inline `crate::`, `super::` and child-module paths; test modules are ignored.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

type ModPath = Vec<String>;

/// Every module of the crate by path, with its source (tests cut off).
fn modules(root: &Path) -> BTreeMap<ModPath, String> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") || path == root.join("main.rs") {
                continue;
            }
            let rel = path.strip_prefix(root).unwrap().with_extension("");
            let mut parts: ModPath = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
                parts.pop();
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let text = match text.find("#[cfg(test)]\nmod tests") {
                Some(i) => text[..i].to_string(),
                None => text,
            };
            let text: String = text
                .lines()
                .map(|l| l.split("//").next().unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n");
            out.insert(parts, text);
        }
    }
    out
}

/// The paths of a `use` tree, braces expanded.
fn expand(tree: &str, prefix: &[String], out: &mut Vec<ModPath>) {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let name = tree.split(" as ").next().unwrap_or_default();
        let mut p = prefix.to_vec();
        p.extend(
            name.split("::")
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from),
        );
        out.push(p);
        return;
    };
    let mut head = prefix.to_vec();
    head.extend(
        tree[..open]
            .split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from),
    );
    let body = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let (mut depth, mut start) = (0, 0);
    for (i, c) in body.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                expand(&body[start..i], &head, out);
                start = i + 1;
            }
            _ => {}
        }
    }
    if !body[start..].trim().is_empty() {
        expand(&body[start..], &head, out);
    }
}

/// Inline paths such as `crate::a::b` or `super::x`, not followed by a `::{` group.
fn inline_paths(text: &str) -> Vec<ModPath> {
    let bytes = text.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !ident(bytes[i]) || (i > 0 && (ident(bytes[i - 1]) || bytes[i - 1] == b':')) {
            i += 1;
            continue;
        }
        let start = i;
        let mut segments = 1;
        loop {
            while i < bytes.len() && ident(bytes[i]) {
                i += 1;
            }
            if text[i..].starts_with("::") && bytes.get(i + 2).is_some_and(|&c| ident(c)) {
                i += 2;
                segments += 1;
            } else {
                break;
            }
        }
        if segments > 1 && !text[i..].starts_with("::{") {
            out.push(text[start..i].split("::").map(String::from).collect());
        }
    }
    out
}

/// The module a path in `me` names (the longest module prefix), if it is one of the crate's.
fn resolve(path: &[String], me: &ModPath, mods: &BTreeMap<ModPath, String>) -> Option<ModPath> {
    let (mut base, rest): (ModPath, &[String]) = match path.first().map(String::as_str) {
        Some("crate") => (Vec::new(), &path[1..]),
        Some("self") => (me.clone(), &path[1..]),
        Some("super") => {
            let mut base = me.clone();
            let supers = path.iter().take_while(|s| *s == "super").count();
            base.truncate(base.len().saturating_sub(supers));
            (base, &path[supers..])
        }
        Some(first) => {
            let mut child = me.clone();
            child.push(first.to_string());
            if !mods.contains_key(&child) {
                return None;
            }
            (me.clone(), path)
        }
        None => return None,
    };
    base.extend(rest.iter().cloned());
    (0..=base.len())
        .rev()
        .map(|k| base[..k].to_vec())
        .find(|p| mods.contains_key(p))
}

/// Edges between siblings (children of their lowest common ancestor); a module's use of its
/// ancestor's own items is an edge to that ancestor's `<self>`.
fn edges(mods: &BTreeMap<ModPath, String>) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let mut out: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    for (me, text) in mods {
        let mut paths = Vec::new();
        let mut offset = 0;
        for line in text.split_inclusive('\n') {
            let trimmed = line.trim_start();
            let body = ["use ", "pub use ", "pub(crate) use ", "pub(super) use "]
                .iter()
                .find_map(|p| trimmed.strip_prefix(p));
            if let Some(body) = body {
                let start = offset + (line.len() - body.len());
                if let Some(end) = text[start..].find(';') {
                    expand(&text[start..start + end], &[], &mut paths);
                }
            }
            offset += line.len();
        }
        paths.extend(inline_paths(text));
        for path in paths {
            let Some(target) = resolve(&path, me, mods) else {
                continue;
            };
            if &target == me {
                continue;
            }
            let common = me.iter().zip(&target).take_while(|(a, b)| a == b).count();
            let side = |p: &ModPath| {
                let mut s = p[..common].to_vec();
                s.push(p.get(common).cloned().unwrap_or_else(|| "<self>".into()));
                s
            };
            let (from, to) = (side(me), side(&target));
            if from != to {
                out.entry(from).or_default().insert(to);
            }
        }
    }
    out
}

/// A cycle, if the graph has one.
fn cycle(graph: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Option<Vec<ModPath>> {
    fn visit(
        node: &ModPath,
        graph: &BTreeMap<ModPath, BTreeSet<ModPath>>,
        done: &mut BTreeSet<ModPath>,
        stack: &mut Vec<ModPath>,
    ) -> Option<Vec<ModPath>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            return Some(stack[at..].to_vec());
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, done, stack) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(node.clone());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut done, &mut Vec::new()))
}

#[test]
fn the_crates_modules_form_no_cycle() {
    let mods = modules(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(mods.contains_key(&vec!["controller".to_string(), "instance".to_string()]));
    let graph = edges(&mods);
    if let Some(c) = cycle(&graph) {
        let shown: Vec<String> = c.iter().map(|p| p.join("::")).collect();
        panic!("module cycle: {} -> back to the first", shown.join(" -> "));
    }
}

#[test]
fn a_parent_used_by_its_child_is_a_cycle() {
    let mods: BTreeMap<ModPath, String> = [
        (vec![], String::new()),
        (vec!["a".into()], "mod b; fn f() { b::g() }".into()),
        (vec!["a".into(), "b".into()], "use super::Thing;".into()),
        (vec!["c".into()], "use crate::a::b::g;".into()),
    ]
    .into();
    let graph = edges(&mods);
    assert!(cycle(&graph).is_some(), "{graph:?}");
    let mut fixed = mods.clone();
    fixed.insert(vec!["a".into(), "b".into()], "use super::sibling::Thing;".into());
    fixed.insert(vec!["a".into(), "sibling".into()], String::new());
    assert!(cycle(&edges(&fixed)).is_none(), "{:?}", edges(&fixed));
}
