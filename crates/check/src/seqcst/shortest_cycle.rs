//! Finding a short cycle in a large directed graph without recursion.
//!
//! A cycle in the write-order graph is a violation, and the fewer constraints it has, the fewer
//! operations a person must look at to believe it. The globally shortest cycle costs a BFS per
//! node, which is fine inside the small strongly connected components real violations produce
//! but not for a whole 100k-node graph; so the search first discards every node that is on no
//! cycle (Kahn's algorithm, then strongly connected components), and bounds the total BFS work.

use std::collections::VecDeque;

/// Upper bound on edge visits spent looking for the shortest cycle once one is known to exist.
/// Beyond it the shortest cycle found so far is reported (still a valid, small explanation).
const SEARCH_BUDGET: usize = 20_000_000;

/// Adjacency lists in compressed form: the out-edges of `u` are `edge_ids[offsets[u]..offsets[u+1]]`.
struct Csr {
    offsets: Vec<usize>,
    edge_ids: Vec<usize>,
}

impl Csr {
    fn new(node_count: usize, edges: &[(u32, u32)], reverse: bool) -> Self {
        let key = |&(from, to): &(u32, u32)| if reverse { to } else { from } as usize;
        let mut offsets = vec![0usize; node_count + 1];
        for edge in edges {
            offsets[key(edge) + 1] += 1;
        }
        for i in 0..node_count {
            offsets[i + 1] += offsets[i];
        }
        let mut next = offsets.clone();
        let mut edge_ids = vec![0usize; edges.len()];
        for (id, edge) in edges.iter().enumerate() {
            let slot = &mut next[key(edge)];
            edge_ids[*slot] = id;
            *slot += 1;
        }
        Self { offsets, edge_ids }
    }

    fn out(&self, node: usize) -> &[usize] {
        &self.edge_ids[self.offsets[node]..self.offsets[node + 1]]
    }
}

/// Returns the edges (indices into `edges`, in cycle order) of a shortest cycle, or `None` if
/// the graph is acyclic. Exact unless the search budget runs out, in which case it is the
/// shortest found. Runs in O(V + E) when the graph is acyclic.
pub(super) fn shortest_cycle(node_count: usize, edges: &[(u32, u32)]) -> Option<Vec<usize>> {
    let fwd = Csr::new(node_count, edges, false);
    let on_some_cycle = nodes_on_cycles(node_count, edges, &fwd)?;
    let rev = Csr::new(node_count, edges, true);
    let component = strongly_connected_components(node_count, edges, &fwd, &rev, &on_some_cycle);

    let mut members: Vec<Vec<usize>> = Vec::new();
    for (node, &c) in component.iter().enumerate() {
        if c != u32::MAX {
            let c = c as usize;
            if members.len() <= c {
                members.resize_with(c + 1, Vec::new);
            }
            members[c].push(node);
        }
    }
    // Small components first: that is where short cycles usually are, and a cycle of two
    // constraints (the minimum, as there are no self-loops) ends the search.
    members.retain(|m| m.len() >= 2);
    members.sort_by_key(Vec::len);

    let mut bfs = Bfs::new(node_count);
    let mut best: Option<Vec<usize>> = None;
    let mut work = 0usize;
    'search: for nodes in &members {
        for &start in nodes {
            let bound = best.as_ref().map_or(usize::MAX, Vec::len);
            if let Some(cycle) = bfs.cycle_through(start, bound, &fwd, edges, &component, &mut work)
            {
                best = Some(cycle);
            }
            if best.as_ref().is_some_and(|b| b.len() <= 2) || work > SEARCH_BUDGET {
                break 'search;
            }
        }
    }
    best
}

/// Kahn's algorithm: peels off nodes with no remaining predecessor. What is left is the nodes on
/// cycles and those downstream of them; `None` if nothing is left (the graph is acyclic).
fn nodes_on_cycles(node_count: usize, edges: &[(u32, u32)], fwd: &Csr) -> Option<Vec<bool>> {
    let mut indegree = vec![0u32; node_count];
    for &(_, to) in edges {
        indegree[to as usize] += 1;
    }
    let mut ready: Vec<usize> = (0..node_count).filter(|&n| indegree[n] == 0).collect();
    let mut removed = 0;
    while let Some(node) = ready.pop() {
        removed += 1;
        for &e in fwd.out(node) {
            let to = edges[e].1 as usize;
            indegree[to] -= 1;
            if indegree[to] == 0 {
                ready.push(to);
            }
        }
    }
    (removed < node_count).then(|| indegree.iter().map(|&d| d > 0).collect())
}

/// Kosaraju's algorithm with explicit stacks, over the nodes marked `keep`. Returns a component
/// id per node (`u32::MAX` for nodes not kept).
fn strongly_connected_components(
    node_count: usize,
    edges: &[(u32, u32)],
    fwd: &Csr,
    rev: &Csr,
    keep: &[bool],
) -> Vec<u32> {
    let mut finished = Vec::new();
    let mut visited = vec![false; node_count];
    for root in (0..node_count).filter(|&n| keep[n]) {
        if visited[root] {
            continue;
        }
        visited[root] = true;
        let mut stack = vec![(root, 0usize)];
        while let Some((node, next)) = stack.last_mut() {
            let out = fwd.out(*node);
            if let Some(&e) = out.get(*next) {
                *next += 1;
                let to = edges[e].1 as usize;
                if keep[to] && !visited[to] {
                    visited[to] = true;
                    stack.push((to, 0));
                }
            } else {
                finished.push(*node);
                stack.pop();
            }
        }
    }
    let mut component = vec![u32::MAX; node_count];
    let mut count = 0u32;
    for &root in finished.iter().rev() {
        if component[root] != u32::MAX {
            continue;
        }
        component[root] = count;
        let mut stack = vec![root];
        while let Some(node) = stack.pop() {
            for &e in rev.out(node) {
                let from = edges[e].0 as usize;
                if keep[from] && component[from] == u32::MAX {
                    component[from] = count;
                    stack.push(from);
                }
            }
        }
        count += 1;
    }
    component
}

/// Scratch space for repeated BFS runs; `stamp` avoids clearing it between runs.
struct Bfs {
    stamp: u32,
    seen: Vec<u32>,
    depth: Vec<usize>,
    parent_edge: Vec<usize>,
    queue: VecDeque<usize>,
}

impl Bfs {
    fn new(node_count: usize) -> Self {
        Self {
            stamp: 0,
            seen: vec![0; node_count],
            depth: vec![0; node_count],
            parent_edge: vec![0; node_count],
            queue: VecDeque::new(),
        }
    }

    /// The shortest cycle through `start` inside its component, if shorter than `bound` edges.
    fn cycle_through(
        &mut self,
        start: usize,
        bound: usize,
        fwd: &Csr,
        edges: &[(u32, u32)],
        component: &[u32],
        work: &mut usize,
    ) -> Option<Vec<usize>> {
        self.stamp += 1;
        self.queue.clear();
        self.seen[start] = self.stamp;
        self.depth[start] = 0;
        self.queue.push_back(start);
        while let Some(node) = self.queue.pop_front() {
            if self.depth[node] + 1 >= bound {
                return None;
            }
            for &e in fwd.out(node) {
                *work += 1;
                let to = edges[e].1 as usize;
                if component[to] != component[start] {
                    continue;
                }
                if to == start {
                    let mut cycle = vec![e];
                    let mut at = node;
                    while at != start {
                        let back = self.parent_edge[at];
                        cycle.push(back);
                        at = edges[back].0 as usize;
                    }
                    cycle.reverse();
                    return Some(cycle);
                }
                if self.seen[to] != self.stamp {
                    self.seen[to] = self.stamp;
                    self.depth[to] = self.depth[node] + 1;
                    self.parent_edge[to] = e;
                    self.queue.push_back(to);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_cycle(edges: &[(u32, u32)], cycle: &[usize]) -> bool {
        !cycle.is_empty()
            && (0..cycle.len()).all(|i| edges[cycle[i]].1 == edges[cycle[(i + 1) % cycle.len()]].0)
    }

    #[test]
    fn acyclic_graphs_have_no_cycle() {
        assert_eq!(shortest_cycle(4, &[(0, 1), (1, 2), (0, 2), (2, 3)]), None);
        assert_eq!(shortest_cycle(3, &[]), None);
    }

    #[test]
    fn finds_the_shortest_of_several_cycles() {
        // A 4-cycle 0-1-2-3 and a 2-cycle 5-6 hanging off node 3, plus a tail.
        let edges = [
            (0, 1),
            (1, 2),
            (2, 3),
            (3, 0),
            (3, 5),
            (5, 6),
            (6, 5),
            (6, 7),
        ];
        let cycle = shortest_cycle(8, &edges).unwrap();
        assert!(is_cycle(&edges, &cycle));
        assert_eq!(cycle.len(), 2);
    }

    #[test]
    fn finds_a_chord_shortcut_inside_one_component() {
        // 0->1->2->3->4->0 with a chord 3->1 making the 3-cycle 1-2-3.
        let edges = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 0), (3, 1)];
        let cycle = shortest_cycle(5, &edges).unwrap();
        assert!(is_cycle(&edges, &cycle));
        assert_eq!(cycle.len(), 3);
    }

    #[test]
    fn long_chains_do_not_overflow_the_stack() {
        let n = 300_000u32;
        let mut edges: Vec<(u32, u32)> = (0..n - 1).map(|i| (i, i + 1)).collect();
        assert_eq!(shortest_cycle(n as usize, &edges), None);
        edges.push((n - 1, 0));
        let cycle = shortest_cycle(n as usize, &edges).unwrap();
        assert_eq!(cycle.len(), n as usize);
        assert!(is_cycle(&edges, &cycle));
    }
}
