//! The dependency graph of a ResourceGraphDefinition: a deterministic topological order
//! (declaration order among independent resources, as kro) and cycles spelled out.

use std::collections::{BTreeSet, BinaryHeap};

/// A cycle between resources.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("graph contains a cycle: {}", .0.join(" -> "))]
pub struct CycleError(pub Vec<String>);

/// Orders `ids` (in declaration order) so every id comes after its dependencies; `deps[i]` are
/// the indices `ids[i]` depends on. Among resources whose dependencies are met, the one
/// declared first comes first.
///
/// # Errors
/// [`CycleError`] naming the cycle, e.g. `a -> b -> a`.
pub(crate) fn topological_order(ids: &[String], deps: &[BTreeSet<usize>]) -> Result<Vec<usize>, CycleError> {
    let n = ids.len();
    let mut remaining: Vec<usize> = deps.iter().map(BTreeSet::len).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, d) in deps.iter().enumerate() {
        for &j in d {
            dependents[j].push(i);
        }
    }
    // A max-heap of reversed indices pops the earliest declared resource first.
    let mut ready: BinaryHeap<std::cmp::Reverse<usize>> = (0..n)
        .filter(|&i| remaining[i] == 0)
        .map(std::cmp::Reverse)
        .collect();
    let mut order = Vec::with_capacity(n);
    while let Some(std::cmp::Reverse(i)) = ready.pop() {
        order.push(i);
        for &d in &dependents[i] {
            remaining[d] -= 1;
            if remaining[d] == 0 {
                ready.push(std::cmp::Reverse(d));
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    Err(CycleError(find_cycle(ids, deps, &remaining)))
}

/// One cycle among the nodes left with unmet dependencies, starting at the earliest declared.
fn find_cycle(ids: &[String], deps: &[BTreeSet<usize>], remaining: &[usize]) -> Vec<String> {
    let stuck: Vec<usize> = (0..ids.len()).filter(|&i| remaining[i] > 0).collect();
    let start = stuck[0];
    // Walk dependencies among stuck nodes until a node repeats.
    let mut path = vec![start];
    let mut current = start;
    loop {
        let next = deps[current]
            .iter()
            .copied()
            .find(|d| remaining[*d] > 0)
            .expect("a stuck node has a stuck dependency");
        if let Some(pos) = path.iter().position(|&p| p == next) {
            let mut cycle: Vec<String> = path[pos..].iter().map(|&i| ids[i].clone()).collect();
            cycle.push(ids[next].clone());
            return cycle;
        }
        path.push(next);
        current = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn independent_resources_keep_declaration_order() {
        let order = topological_order(
            &ids(&["c", "a", "b"]),
            &[BTreeSet::new(), BTreeSet::new(), BTreeSet::new()],
        )
        .unwrap();
        assert_eq!(order, [0, 1, 2]);
    }

    #[test]
    fn dependencies_come_first() {
        // service depends on deployment, ingress on service, config is independent.
        let deps = [
            BTreeSet::from([1]),
            BTreeSet::new(),
            BTreeSet::from([0]),
            BTreeSet::new(),
        ];
        let order = topological_order(&ids(&["service", "deployment", "ingress", "config"]), &deps).unwrap();
        assert_eq!(order, [1, 0, 2, 3]);
    }

    #[test]
    fn a_cycle_is_spelled_out() {
        let deps = [BTreeSet::from([1]), BTreeSet::from([2]), BTreeSet::from([0])];
        let err = topological_order(&ids(&["a", "b", "c"]), &deps).unwrap_err();
        assert_eq!(err.to_string(), "graph contains a cycle: a -> b -> c -> a");
    }
}
