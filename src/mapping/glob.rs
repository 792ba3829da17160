//! The glob automaton: one trie over dot-separated segments per event kind, as
//! statsd_exporter's `fsm` package builds it. Each node keeps its literal children in a hash
//! map and its `*` child apart, so a lookup walks the name's segments and never loops over
//! rules; the work depends on how many trie paths the name can follow, not on the number of
//! glob rules.

use crate::line::EventKind;
use foldhash::HashMap;

/// Index of a node in [`GlobAutomaton::nodes`].
type NodeId = u32;

#[derive(Debug, Default)]
struct Node {
    literals: HashMap<Box<str>, NodeId>,
    star: Option<NodeId>,
    /// Fewest and most segments that any pattern through this node still needs; a branch whose
    /// range excludes the name's remaining segment count cannot lead to a match.
    min_remaining: usize,
    max_remaining: usize,
    /// The rule whose pattern ends here. Only the first rule to *create* the node sets it, so
    /// a later identical pattern, or one that is a prefix of an earlier pattern, never wins
    /// (statsd_exporter's quirk, kept for compatibility).
    result: Option<usize>,
    /// Priority of the result: the ordinal of the *last* rule ending here, as in the FSM.
    priority: usize,
    /// The best (lowest) priority of any result in this subtree, to prune ordered searches.
    best_in_subtree: usize,
}

/// A glob rule's place in the automaton, as returned by [`GlobAutomaton::lookup`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct GlobMatch<'n> {
    /// The rule index given to [`GlobAutomaton::add`].
    pub rule: usize,
    /// The segments matched by `*`, in pattern order.
    pub captures: Vec<&'n str>,
}

/// Tries of glob patterns, one per event kind.
#[derive(Debug)]
pub(crate) struct GlobAutomaton {
    nodes: Vec<Node>,
    /// When true, file order is ignored: a literal segment beats `*` at each level and the
    /// first match of that depth-first search wins.
    disable_ordering: bool,
    next_priority: usize,
}

fn root_of(kind: EventKind) -> NodeId {
    match kind {
        EventKind::Counter => 0,
        EventKind::Gauge => 1,
        EventKind::Observer => 2,
    }
}

const ALL_KINDS: [EventKind; 3] = [EventKind::Counter, EventKind::Gauge, EventKind::Observer];

impl GlobAutomaton {
    /// An automaton with no patterns.
    pub(crate) fn new(disable_ordering: bool) -> GlobAutomaton {
        let nodes = (0..3)
            .map(|_| Node {
                best_in_subtree: usize::MAX,
                ..Node::default()
            })
            .collect();
        GlobAutomaton {
            nodes,
            disable_ordering,
            next_priority: 0,
        }
    }

    /// Adds `pattern` (already validated: dot-separated, whole-segment `*`) for `rule`, in the
    /// trie of `kind` or of every kind. Returns the number of `*` segments. Rules must be
    /// added in file order.
    pub(crate) fn add(&mut self, pattern: &str, kind: Option<EventKind>, rule: usize) -> usize {
        let segments: Vec<&str> = pattern.split('.').collect();
        let kinds: &[EventKind] = match &kind {
            Some(k) => std::slice::from_ref(k),
            None => &ALL_KINDS,
        };
        let priority = self.next_priority;
        self.next_priority += 1;
        for &k in kinds {
            let mut current = root_of(k);
            for (i, segment) in segments.iter().enumerate() {
                let remaining = segments.len() - i - 1;
                let existing = if *segment == "*" {
                    self.nodes[current as usize].star
                } else {
                    self.nodes[current as usize].literals.get(*segment).copied()
                };
                let next = match existing {
                    Some(id) => {
                        let node = &mut self.nodes[id as usize];
                        node.min_remaining = node.min_remaining.min(remaining);
                        node.max_remaining = node.max_remaining.max(remaining);
                        id
                    }
                    None => {
                        let id = self.nodes.len() as NodeId;
                        self.nodes.push(Node {
                            min_remaining: remaining,
                            max_remaining: remaining,
                            result: (remaining == 0).then_some(rule),
                            best_in_subtree: usize::MAX,
                            ..Node::default()
                        });
                        let parent = &mut self.nodes[current as usize];
                        if *segment == "*" {
                            parent.star = Some(id);
                        } else {
                            parent.literals.insert((*segment).into(), id);
                        }
                        id
                    }
                };
                current = next;
            }
            self.nodes[current as usize].priority = priority;
        }
        segments.iter().filter(|s| **s == "*").count()
    }

    /// Computes the pruning bounds; call once after the last [`add`](Self::add).
    pub(crate) fn finish(&mut self) {
        for root in 0..3 {
            self.compute_best(root);
        }
    }

    fn compute_best(&mut self, id: NodeId) -> usize {
        let node = &self.nodes[id as usize];
        let mut best = if node.result.is_some() {
            node.priority
        } else {
            usize::MAX
        };
        let children: Vec<NodeId> = node.literals.values().copied().chain(node.star).collect();
        for child in children {
            best = best.min(self.compute_best(child));
        }
        self.nodes[id as usize].best_in_subtree = best;
        best
    }

    /// Finds the glob rule for `name`: with ordering, the matching pattern listed first;
    /// without, the first found when literal segments are tried before `*`.
    pub(crate) fn lookup<'n>(&self, name: &'n str, kind: EventKind) -> Option<GlobMatch<'n>> {
        let root = &self.nodes[root_of(kind) as usize];
        if root.literals.is_empty() && root.star.is_none() {
            return None;
        }
        let segments: Vec<&'n str> = name.split('.').collect();
        let mut search = Search {
            automaton: self,
            segments: &segments,
            captures: Vec::new(),
            found: None,
        };
        search.walk(root_of(kind), 0);
        search
            .found
            .map(|(_, rule, captures)| GlobMatch { rule, captures })
    }
}

struct Search<'a, 'n> {
    automaton: &'a GlobAutomaton,
    segments: &'a [&'n str],
    captures: Vec<&'n str>,
    /// (priority, rule, captures) of the best match so far.
    found: Option<(usize, usize, Vec<&'n str>)>,
}

impl<'n> Search<'_, 'n> {
    /// Depth-first, literal before `*`. Returns true when the search is over.
    fn walk(&mut self, id: NodeId, depth: usize) -> bool {
        let node = &self.automaton.nodes[id as usize];
        if depth == self.segments.len() {
            let Some(rule) = node.result else {
                return false;
            };
            if self.automaton.disable_ordering {
                self.found = Some((node.priority, rule, self.captures.clone()));
                return true;
            }
            if self.found.as_ref().is_none_or(|f| node.priority < f.0) {
                self.found = Some((node.priority, rule, self.captures.clone()));
            }
            return false;
        }
        let remaining = self.segments.len() - depth - 1;
        let segment = self.segments[depth];
        if let Some(&child) = node.literals.get(segment)
            && self.worth_visiting(child, remaining)
            && self.walk(child, depth + 1)
        {
            return true;
        }
        if let Some(child) = node.star
            && self.worth_visiting(child, remaining)
        {
            self.captures.push(segment);
            let done = self.walk(child, depth + 1);
            self.captures.pop();
            if done {
                return true;
            }
        }
        false
    }

    fn worth_visiting(&self, id: NodeId, remaining: usize) -> bool {
        let node = &self.automaton.nodes[id as usize];
        if remaining < node.min_remaining || remaining > node.max_remaining {
            return false;
        }
        if self.automaton.disable_ordering {
            return true;
        }
        // Ordered: a subtree whose best rule comes after the current winner cannot win.
        match &self.found {
            Some(f) => node.best_in_subtree < f.0,
            None => node.best_in_subtree != usize::MAX,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(patterns: &[&str], disable_ordering: bool) -> GlobAutomaton {
        let mut a = GlobAutomaton::new(disable_ordering);
        for (i, p) in patterns.iter().enumerate() {
            a.add(p, None, i);
        }
        a.finish();
        a
    }

    fn rule(a: &GlobAutomaton, name: &str) -> Option<usize> {
        a.lookup(name, EventKind::Counter).map(|m| m.rule)
    }

    #[test]
    fn star_is_one_whole_segment_and_may_be_empty() {
        let a = build(&["a.*.c"], false);
        assert_eq!(rule(&a, "a.b.c"), Some(0));
        assert_eq!(rule(&a, "a..c"), Some(0));
        assert_eq!(rule(&a, "a.b.x.c"), None);
        assert_eq!(rule(&a, "a.b"), None);
        let m = a.lookup("a.xyz.c", EventKind::Counter).unwrap();
        assert_eq!(m.captures, vec!["xyz"]);
        let single = build(&["*"], false);
        assert_eq!(rule(&single, ""), Some(0));
        assert_eq!(rule(&single, "x.y"), None);
    }

    #[test]
    fn ordered_first_listed_wins() {
        let a = build(&["order.*.*", "order.*.bbb"], false);
        assert_eq!(rule(&a, "order.good.bbb"), Some(0));
        let a = build(&["order.*.bbb", "order.*.*"], false);
        assert_eq!(rule(&a, "order.good.bbb"), Some(0));
        assert_eq!(rule(&a, "order.good.ccc"), Some(1));
    }

    #[test]
    fn ordered_search_backtracks_out_of_literal_dead_ends() {
        let a = build(&["*.dummy.*", "full.name.*"], false);
        assert_eq!(rule(&a, "whatever.dummy.test"), Some(0));
        assert_eq!(rule(&a, "full.name.x"), Some(1));
        // The literal `full` branch fails at `dummy`, so the `*` branch must be tried.
        assert_eq!(rule(&a, "full.dummy.x"), Some(0));
    }

    #[test]
    fn disabled_ordering_prefers_literals_with_backtracking() {
        let a = build(&["noorder.*.*", "noorder.*.bbb", "noorder.ccc.bbb"], true);
        assert_eq!(rule(&a, "noorder.good.bbb"), Some(1));
        assert_eq!(rule(&a, "noorder.ccc.bbb"), Some(2));
        assert_eq!(rule(&a, "noorder.ccc.zzz"), Some(0));
        let m = a.lookup("noorder.ccc.zzz", EventKind::Counter).unwrap();
        assert_eq!(m.captures, vec!["ccc", "zzz"]);
    }

    #[test]
    fn identical_or_prefix_pattern_added_later_never_wins() {
        let a = build(&["a.b", "a.b"], false);
        assert_eq!(rule(&a, "a.b"), Some(0));
        let a = build(&["a.b.c", "a.b"], false);
        assert_eq!(rule(&a, "a.b"), None);
        assert_eq!(rule(&a, "a.b.c"), Some(0));
    }

    #[test]
    fn identical_later_pattern_takes_over_priority() {
        // statsd_exporter gives the shared final state the later rule's priority while keeping
        // the first rule as its result, so `a.b` (rule 1) now outranks it.
        let a = build(&["a.*", "a.b", "a.*"], false);
        assert_eq!(rule(&a, "a.b"), Some(1));
        assert_eq!(rule(&a, "a.c"), Some(0));
    }

    #[test]
    fn kinds_have_separate_tries() {
        let mut a = GlobAutomaton::new(false);
        a.add("x.*", Some(EventKind::Gauge), 0);
        a.add("x.*", None, 1);
        a.finish();
        assert_eq!(a.lookup("x.y", EventKind::Gauge).map(|m| m.rule), Some(0));
        assert_eq!(a.lookup("x.y", EventKind::Counter).map(|m| m.rule), Some(1));
    }

    #[test]
    fn lookup_cost_does_not_depend_on_rule_count() {
        // Many rules with distinct first segments: the walk touches one branch.
        let patterns: Vec<String> = (0..5000).map(|i| format!("app{i}.*.count")).collect();
        let refs: Vec<&str> = patterns.iter().map(String::as_str).collect();
        let a = build(&refs, false);
        assert_eq!(rule(&a, "app4999.x.count"), Some(4999));
        assert_eq!(rule(&a, "nope.x.count"), None);
    }
}
