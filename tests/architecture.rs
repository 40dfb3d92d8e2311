//! The architecture rules, checked on the source trees so they stay true: no import circle
//! between the files of `runtime/src` or `executor-pool/src` (but the inherent pair
//! `context.rs` ↔ `runtime.rs`: the loop enters its context, the context hands out the
//! loop), and no Rust file of the workspace (sources, benchmarks, lessons, tests) over 500
//! lines unless its opening `//!` paragraph says why in a line with "Long because".
//! (Long because it carries its own small reader of Rust paths, std only.)
//!
//! The import graph is file-level: a file uses another when one of its `use crate::…`,
//! `super::…` or `self::…` trees, or an inline `crate::…`/`super::…` path, names an item
//! that file defines (re-exports in `mod.rs`/`lib.rs` are followed to where the item is
//! defined; `lib.rs` itself, the map, is no target). A trailing `#[cfg(test)] mod tests`
//! does not count. Circles are the strongly connected components (Tarjan). The checker
//! proves itself on small in-memory crates first (`the_circle_finder_*`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The longest a source file may be without a reason in its opening `//!` paragraph.
const MAX_LINES: usize = 500;

/// The only circle allowed, in `runtime/src`.
const ALLOWED_CIRCLE: [&str; 2] = ["context.rs", "runtime.rs"];

/// A module path inside a crate: `["net", "tcp"]` for `net/tcp.rs`, `[]` for `lib.rs`.
type Module = Vec<String>;

/// One crate's files: module path → (file path relative to `src`, text without comments
/// and without the trailing test module).
struct Crate {
    files: BTreeMap<Module, (String, String)>,
}

/// An import circle: its files, and the edges between them.
#[derive(Debug)]
struct Circle {
    files: Vec<String>,
    edges: Vec<(String, String)>,
}

impl Crate {
    /// A crate from `(path relative to src, source text)` pairs.
    fn new<'a>(sources: impl IntoIterator<Item = (&'a str, &'a str)>) -> Crate {
        let mut files = BTreeMap::new();
        for (path, text) in sources {
            let mut module: Module = path
                .trim_end_matches(".rs")
                .split('/')
                .map(str::to_owned)
                .collect();
            if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
                module.pop();
            }
            files.insert(module, (path.to_owned(), strip(text)));
        }
        Crate { files }
    }

    /// Reads every `.rs` file under `src`.
    fn read(src: &Path) -> Crate {
        let sources: Vec<(String, String)> = rust_files(src)
            .into_iter()
            .map(|path| {
                let relative = path.strip_prefix(src).unwrap().to_string_lossy();
                let relative = relative.replace('\\', "/");
                (relative, std::fs::read_to_string(&path).unwrap())
            })
            .collect();
        Crate::new(sources.iter().map(|(p, t)| (p.as_str(), t.as_str())))
    }

    fn is_file(&self, module: &[String]) -> bool {
        self.files.contains_key(module)
    }

    /// Every path `module`'s text names through `crate`, `super` or `self`, made absolute.
    fn paths(&self, module: &Module) -> Vec<Module> {
        let text = &self.files[module].1;
        let mut named = Vec::new();
        for body in use_statements(text, false) {
            if starts_with_word(&body, &["crate", "super", "self"]) {
                named.extend(use_tree(&[], &body).into_iter().map(|(path, _)| path));
            }
        }
        named.extend(inline_paths(text));
        named
            .into_iter()
            .filter(|path| !path.is_empty())
            .map(|path| absolute(module, &path))
            .collect()
    }

    /// What `module` re-exports (`pub use`, `pub(crate) use`...): name → absolute path.
    fn reexports(&self, module: &Module) -> BTreeMap<String, Module> {
        let mut found = BTreeMap::new();
        for body in use_statements(&self.files[module].1, true) {
            for (path, alias) in use_tree(&[], &body) {
                let Some(last) = path.last() else { continue };
                let name = alias.unwrap_or_else(|| last.clone());
                let target = match path[0].as_str() {
                    "crate" | "super" | "self" => absolute(module, &path),
                    first => {
                        let mut child = module.clone();
                        child.push(first.to_owned());
                        if !self.is_file(&child) {
                            continue; // an outside crate's item
                        }
                        module.iter().cloned().chain(path).collect()
                    }
                };
                found.insert(name, target);
            }
        }
        found
    }

    /// The file that defines what `path` names: as deep as `path` follows files, and
    /// through re-exports to where the item is defined.
    fn resolve(&self, path: &[String], depth: usize) -> Module {
        let mut current: Module = Vec::new();
        for segment in path {
            let mut child = current.clone();
            child.push(segment.clone());
            if self.is_file(&child) {
                current = child;
                continue;
            }
            if depth < 10
                && let Some(target) = self.reexports(&current).get(segment)
            {
                return self.resolve(target, depth + 1);
            }
            return current;
        }
        current
    }

    /// The file-level import graph: file → files it uses.
    fn graph(&self) -> BTreeMap<Module, BTreeSet<Module>> {
        self.files
            .keys()
            .map(|module| {
                let used = self
                    .paths(module)
                    .iter()
                    .map(|path| self.resolve(path, 0))
                    .filter(|target| target != module && !target.is_empty() && self.is_file(target))
                    .collect();
                (module.clone(), used)
            })
            .collect()
    }

    /// Every import circle (a strongly connected component of two files or more).
    fn circles(&self) -> Vec<Circle> {
        let graph = self.graph();
        strongly_connected(&graph)
            .into_iter()
            .filter(|component| component.len() > 1)
            .map(|component| {
                let inside: BTreeSet<&Module> = component.iter().collect();
                let name = |module: &Module| self.files[module].0.clone();
                let mut files: Vec<String> = component.iter().map(name).collect();
                files.sort();
                let mut edges = Vec::new();
                for from in &component {
                    for to in &graph[from] {
                        if inside.contains(to) {
                            edges.push((name(from), name(to)));
                        }
                    }
                }
                edges.sort();
                Circle { files, edges }
            })
            .collect()
    }
}

/// The text as the graph reads it: without a trailing `#[cfg(test)] mod tests` and
/// without `//` comments.
fn strip(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Whether `text` starts with one of `words`, as a whole word.
fn starts_with_word(text: &str, words: &[&str]) -> bool {
    words.iter().any(|word| {
        text.strip_prefix(word)
            .is_some_and(|rest| !rest.starts_with(is_word))
    })
}

/// The bodies of the `use` declarations in `text` (what stands between `use` and `;`);
/// with `public`, only those of `pub use` and `pub(…) use`.
fn use_statements(text: &str, public: bool) -> Vec<String> {
    let mut bodies = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find("use").map(|at| at + from) {
        from = at + 3;
        let before = text[..at].chars().next_back();
        let after = text[at + 3..].chars().next();
        if before.is_some_and(is_word) || !after.is_some_and(char::is_whitespace) {
            continue;
        }
        if public {
            // `pub`, optionally `(…)`, then whitespace, just before `use`.
            let head = text[..at].trim_end();
            let head = match head.strip_suffix(')') {
                Some(open) => match open.rfind('(') {
                    Some(paren) => open[..paren].trim_end(),
                    None => continue,
                },
                None => head,
            };
            let Some(rest) = head.strip_suffix("pub") else {
                continue;
            };
            if rest.chars().next_back().is_some_and(is_word) {
                continue;
            }
        }
        let Some(end) = text[at..].find(';') else {
            break;
        };
        bodies.push(text[at + 3..at + end].trim().to_owned());
    }
    bodies
}

/// Expands a use tree (`a::{b, c::{d as e}}`) below `prefix` into paths, each with the
/// name it is imported as when renamed. A trailing `self` names the module itself.
fn use_tree(prefix: &[String], item: &str) -> Vec<(Module, Option<String>)> {
    let item = item.trim();
    if let Some(open) = item.find('{')
        && item.ends_with('}')
    {
        let mut base = prefix.to_vec();
        base.extend(segments(item[..open].trim_end_matches(':')));
        return split_top_level(&item[open + 1..item.len() - 1])
            .iter()
            .flat_map(|part| use_tree(&base, part))
            .collect();
    }
    let (path, alias) = match item.split_once(" as ") {
        Some((path, alias)) => (path.trim(), Some(alias.trim().to_owned())),
        None => (item, None),
    };
    let mut full = prefix.to_vec();
    full.extend(segments(path));
    if full.last().is_some_and(|last| last == "self") {
        full.pop();
    }
    vec![(full, alias)]
}

fn segments(path: &str) -> Vec<String> {
    path.split("::")
        .map(str::trim)
        .filter(|segment| !segment.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `a, b::{c, d}, e` split on its top-level commas.
fn split_top_level(list: &str) -> Vec<String> {
    let (mut parts, mut current, mut depth) = (Vec::new(), String::new(), 0);
    for c in list.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ => {}
        }
        if c == ',' && depth == 0 {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    parts.push(current);
    parts.retain(|part| !part.trim().is_empty());
    parts
}

/// Inline `crate::a::b` and `super::a` paths (not preceded by a word or `:`).
fn inline_paths(text: &str) -> Vec<Module> {
    let mut found = Vec::new();
    for word in ["crate", "super"] {
        let mut from = 0;
        while let Some(at) = text[from..].find(word).map(|at| at + from) {
            from = at + word.len();
            let before = text[..at].chars().next_back();
            if before.is_some_and(|c| is_word(c) || c == ':') {
                continue;
            }
            let mut path = vec![word.to_owned()];
            let mut rest = &text[from..];
            while let Some(next) = rest.strip_prefix("::") {
                let len = next.find(|c| !is_word(c)).unwrap_or(next.len());
                if len == 0 {
                    break;
                }
                path.push(next[..len].to_owned());
                rest = &next[len..];
            }
            if path.len() > 1 {
                found.push(path);
            }
        }
    }
    found
}

/// `path` (starting with `crate`, `super` or `self`) made absolute from `module`.
fn absolute(module: &Module, path: &[String]) -> Module {
    if path[0] == "crate" {
        return path[1..].to_vec();
    }
    let mut current = module.clone();
    let mut rest = path;
    while let Some((first, tail)) = rest.split_first() {
        match first.as_str() {
            "super" => {
                current.pop();
            }
            "self" => {}
            _ => break,
        }
        rest = tail;
    }
    current.extend(rest.iter().cloned());
    current
}

/// Tarjan's strongly connected components.
fn strongly_connected(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct Search<'a> {
        graph: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'a Module, usize>,
        low: BTreeMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        on_stack: BTreeSet<&'a Module>,
        components: Vec<Vec<Module>>,
    }
    impl<'a> Search<'a> {
        fn visit(&mut self, v: &'a Module) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in &self.graph[v] {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                loop {
                    let w = self.stack.pop().unwrap();
                    self.on_stack.remove(w);
                    component.push(w.clone());
                    if w == v {
                        break;
                    }
                }
                self.components.push(component);
            }
        }
    }
    let mut search = Search {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    for v in graph.keys() {
        if !search.index.contains_key(v) {
            search.visit(v);
        }
    }
    search.components
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The source trees the import rule covers, each with its name.
fn trees() -> Vec<(&'static str, PathBuf)> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    vec![
        ("runtime/src", workspace.join("runtime/src")),
        ("executor-pool/src", workspace.join("executor-pool/src")),
        (
            "executor-pool/process/src",
            workspace.join("executor-pool/process/src"),
        ),
        (
            "executor-pool/remote/src",
            workspace.join("executor-pool/remote/src"),
        ),
    ]
}

/// Every tree of Rust the length rule covers: the crates, their benchmarks, the lessons
/// and these tests.
fn all_trees() -> Vec<(&'static str, PathBuf)> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut trees = trees();
    trees.extend([
        ("runtime/benches", workspace.join("runtime/benches")),
        ("examples", workspace.join("examples")),
        ("tests", workspace.join("tests")),
    ]);
    trees
}

/// The circles found in `krate`, less the allowed one when `allow` is set.
fn forbidden_circles(krate: &Crate, allow: bool) -> Vec<Circle> {
    krate
        .circles()
        .into_iter()
        .filter(|circle| !(allow && circle.files == ALLOWED_CIRCLE))
        .collect()
}

fn describe(tree: &str, circles: &[Circle]) -> String {
    let mut text = String::new();
    for circle in circles {
        let _ = writeln!(
            text,
            "{tree}: a circle of {} files: {}",
            circle.files.len(),
            circle.files.join(", ")
        );
        for (from, to) in &circle.edges {
            let _ = writeln!(text, "    {from} uses {to}");
        }
    }
    text
}

/// Whether a file with this `text` breaks the length rule: over `MAX_LINES` lines, and no
/// "Long because" line in its opening `//!` paragraph.
fn too_long_without_a_reason(text: &str) -> bool {
    if text.lines().count() <= MAX_LINES {
        return false;
    }
    // The opening `//!` paragraph: from the first line to the first empty `//!` line.
    let reason = text
        .lines()
        .take_while(|line| line.starts_with("//!") && line.trim() != "//!")
        .any(|line| line.contains("Long because"));
    !reason
}

#[test]
fn the_import_graph_has_no_circle_but_context_and_runtime() {
    let mut report = String::new();
    for (name, src) in trees() {
        let krate = Crate::read(&src);
        assert!(krate.files.len() > 1, "no sources found under {src:?}");
        let circles = forbidden_circles(&krate, name == "runtime/src");
        report.push_str(&describe(name, &circles));
    }
    assert!(
        report.is_empty(),
        "import circles (only {} <-> {} may use each other); break each by moving what \
         both need into a file below them:\n{report}",
        ALLOWED_CIRCLE[0],
        ALLOWED_CIRCLE[1]
    );
}

/// Every file `start` reaches through its imports, by file name.
fn reachable(krate: &Crate, start: &str) -> BTreeSet<String> {
    let graph = krate.graph();
    let name = |module: &Module| krate.files[module].0.clone();
    let mut seen = BTreeSet::new();
    let mut pending: Vec<&Module> = graph.keys().filter(|m| name(m) == start).collect();
    assert!(!pending.is_empty(), "no file {start}");
    while let Some(module) = pending.pop() {
        if seen.insert(name(module)) {
            pending.extend(&graph[module]);
        }
    }
    seen
}

/// A task's waker pushes onto the run queue without climbing to the loop: what `waker.rs`
/// reaches through its imports stays below the run queue, never `context.rs` or the
/// loop's `runtime.rs` (smol's model: the waker holds the queue, not the executor).
#[test]
fn a_wake_reaches_the_run_queue_without_the_loop() {
    let runtime = Crate::read(&trees()[0].1);
    let reached = reachable(&runtime, "waker.rs");
    assert!(
        reached.contains("task/run_queue.rs"),
        "waker.rs no longer reaches the run queue: {reached:?}"
    );
    let above: Vec<&String> = reached
        .iter()
        .filter(|file| ["context.rs", "runtime.rs", "task/lifecycle.rs"].contains(&file.as_str()))
        .collect();
    assert!(
        above.is_empty(),
        "a wake climbs above the run queue, through {above:?} (all it reaches: {reached:?})"
    );
}

#[test]
fn no_source_file_is_over_500_lines_without_saying_why() {
    let mut long = Vec::new();
    for (name, src) in all_trees() {
        for path in rust_files(&src) {
            let text = std::fs::read_to_string(&path).unwrap();
            if too_long_without_a_reason(&text) {
                let relative = path.strip_prefix(&src).unwrap().display().to_string();
                long.push(format!("{name}/{relative}: {} lines", text.lines().count()));
            }
        }
    }
    assert!(
        long.is_empty(),
        "over {MAX_LINES} lines, with no \"Long because\" line in the opening //! \
         paragraph: split along a concept, or say why in one line:\n{}",
        long.join("\n")
    );
}

// -------------------------------------------------------------------------------------
// The checker, proven on small crates.
// -------------------------------------------------------------------------------------

#[test]
fn the_circle_finder_finds_a_planted_circle() {
    let krate = Crate::new([
        ("lib.rs", "mod a;\nmod b;\nmod c;\npub use a::Alpha;\n"),
        ("a.rs", "use crate::b::Beta;\npub struct Alpha;\n"),
        ("b.rs", "pub struct Beta(super::c::Gamma);\n"),
        ("c.rs", "use crate::{Alpha, b};\npub struct Gamma;\n"),
    ]);
    let circles = forbidden_circles(&krate, false);
    assert_eq!(circles.len(), 1, "{circles:?}");
    assert_eq!(circles[0].files, ["a.rs", "b.rs", "c.rs"]);
    // c.rs reaches a.rs through lib.rs's re-export of Alpha.
    let edges: Vec<(&str, &str)> = circles[0]
        .edges
        .iter()
        .map(|(from, to)| (from.as_str(), to.as_str()))
        .collect();
    assert_eq!(
        edges,
        [
            ("a.rs", "b.rs"),
            ("b.rs", "c.rs"),
            ("c.rs", "a.rs"),
            ("c.rs", "b.rs")
        ]
    );
    assert!(describe("demo", &circles).contains("c.rs uses a.rs"));
}

#[test]
fn the_circle_finder_finds_no_circle_where_there_is_none() {
    let krate = Crate::new([
        ("lib.rs", "mod net;\nmod io;\npub use net::Stream;\n"),
        (
            "net/mod.rs",
            "mod tcp;\nmod split;\npub use tcp::Stream;\npub(crate) use split::Half;\n",
        ),
        (
            "net/tcp.rs",
            "use crate::io::Registration;\npub struct Stream;\n",
        ),
        (
            "net/split.rs",
            "use super::Stream; // a re-export, defined in tcp.rs\npub struct Half;\n",
        ),
        (
            "io.rs",
            "pub struct Registration;\n#[cfg(test)]\nmod tests {\n    use crate::net::Half;\n}\n",
        ),
    ]);
    let graph = krate.graph();
    let module = |path: &[&str]| path.iter().map(|s| s.to_string()).collect::<Module>();
    assert!(graph[&module(&["net", "split"])].contains(&module(&["net", "tcp"])));
    assert!(graph[&module(&["net", "tcp"])].contains(&module(&["io"])));
    assert!(
        graph[&module(&["io"])].is_empty(),
        "the test module does not count"
    );
    assert!(forbidden_circles(&krate, false).is_empty());
}

#[test]
fn the_circle_finder_allows_only_context_and_runtime() {
    let krate = Crate::new([
        ("lib.rs", "mod context;\nmod runtime;\n"),
        (
            "context.rs",
            "use crate::runtime::Core;\npub struct Context;\n",
        ),
        ("runtime.rs", "pub struct Core(crate::context::Context);\n"),
    ]);
    assert_eq!(krate.circles().len(), 1);
    assert!(forbidden_circles(&krate, true).is_empty());
    assert_eq!(forbidden_circles(&krate, false).len(), 1);
}

#[test]
fn the_length_rule_wants_a_reason_in_the_opening_paragraph() {
    let body = "fn f() {}\n".repeat(MAX_LINES);
    assert!(too_long_without_a_reason(&format!("//! A map.\n{body}")));
    assert!(!too_long_without_a_reason(&format!(
        "//! A map.\n//! Long because the table is one concept.\n{body}"
    )));
    assert!(
        too_long_without_a_reason(&format!(
            "//! A map.\n//!\n//! Long because it is said too late.\n{body}"
        )),
        "only the opening paragraph counts"
    );
    assert!(!too_long_without_a_reason("//! Short.\nfn f() {}\n"));
}
