//! A small exhaustive Countdown solver: iterative deepening over multisets of numbers, so the
//! solution it returns has the fewest steps, and the search order (and so the trace) is
//! deterministic. Used by the generator to guarantee solvable instances and by
//! [`super::solution_trace`] to produce supervised bootstrapping traces.

use std::collections::HashSet;

use super::{Op, Step};

/// Fewest-steps solution of `numbers → target` with every intermediate value in
/// `0..=max_intermediate`, or `None`. Each step combines two numbers of the current multiset
/// (larger operand first) into a new one. Exponential in `numbers.len()`; fine up to ~7 numbers.
pub fn solve(numbers: &[u64], target: u64, max_intermediate: u64) -> Option<Vec<Step>> {
    if numbers.contains(&target) {
        return Some(Vec::new());
    }
    for depth in 1..numbers.len() {
        let mut failed = HashSet::new();
        let mut path = Vec::with_capacity(depth);
        let mut pool: Vec<u64> = numbers.to_vec();
        pool.sort_unstable();
        if dfs(
            &pool,
            target,
            max_intermediate,
            depth,
            &mut path,
            &mut failed,
        ) {
            return Some(path);
        }
    }
    None
}

/// Number of steps of the shortest solution (0 if the target is one of the numbers), or `None`.
pub fn shortest_steps(numbers: &[u64], target: u64, max_intermediate: u64) -> Option<usize> {
    solve(numbers, target, max_intermediate).map(|s| s.len())
}

/// Depth-limited search; `failed` memoises (sorted pool, depth) states known to fail.
fn dfs(
    pool: &[u64],
    target: u64,
    cap: u64,
    depth: usize,
    path: &mut Vec<Step>,
    failed: &mut HashSet<(Vec<u64>, usize)>,
) -> bool {
    if depth == 0 || pool.len() < 2 {
        return false;
    }
    if failed.contains(&(pool.to_vec(), depth)) {
        return false;
    }
    // `pool` is sorted ascending; i < j so pool[j] >= pool[i]: the larger operand goes first.
    for j in 0..pool.len() {
        for i in 0..j {
            if i > 0 && pool[i] == pool[i - 1] {
                continue; // same pair already tried with an equal left operand
            }
            if j > i + 1 && pool[j] == pool[j - 1] {
                continue;
            }
            let (a, b) = (pool[j], pool[i]);
            for op in Op::ALL {
                let Some(c) = op.apply(a, b) else { continue };
                if c > cap {
                    continue;
                }
                path.push(Step { a, op, b, c });
                if c == target {
                    return true;
                }
                let mut next: Vec<u64> = Vec::with_capacity(pool.len() - 1);
                next.extend(
                    pool.iter()
                        .enumerate()
                        .filter(|&(k, _)| k != i && k != j)
                        .map(|(_, &v)| v),
                );
                let pos = next.partition_point(|&v| v < c);
                next.insert(pos, c);
                if dfs(&next, target, cap, depth - 1, path, failed) {
                    return true;
                }
                path.pop();
            }
        }
    }
    failed.insert((pool.to_vec(), depth));
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(numbers: &[u64], target: u64, steps: &[Step]) {
        let mut pool = numbers.to_vec();
        for s in steps {
            let ia = pool.iter().position(|&v| v == s.a).expect("a available");
            pool.remove(ia);
            let ib = pool.iter().position(|&v| v == s.b).expect("b available");
            pool.remove(ib);
            assert_eq!(s.op.apply(s.a, s.b), Some(s.c));
            pool.push(s.c);
        }
        assert_eq!(steps.last().map(|s| s.c), Some(target));
    }

    #[test]
    fn finds_shortest_solutions() {
        // 82 = 25*3 + 7 needs two steps (no single step reaches it).
        let s = solve(&[3, 7, 25, 50], 82, 100).expect("solvable");
        assert_eq!(s.len(), 2);
        check(&[3, 7, 25, 50], 82, &s);
        // 85 = 50 + 25 + 7 + 3 needs three (checked by brute force: no 1- or 2-step way).
        let s = solve(&[3, 7, 25, 50], 85, 100).expect("solvable");
        assert_eq!(s.len(), 3);
        check(&[3, 7, 25, 50], 85, &s);
        // 84 is unreachable from {3, 7, 25, 50} at all.
        assert!(solve(&[3, 7, 25, 50], 84, 1_000_000).is_none());
        // 10 = 7 + 3: one step, larger operand first.
        let s = solve(&[3, 7, 25, 50], 10, 100).unwrap();
        assert_eq!(
            s,
            vec![Step {
                a: 7,
                op: Op::Add,
                b: 3,
                c: 10
            }]
        );
        assert_eq!(shortest_steps(&[3, 7, 25, 50], 10, 100), Some(1));
        assert_eq!(shortest_steps(&[3, 7], 7, 100), Some(0));
    }

    #[test]
    fn respects_cap_and_exact_division() {
        // 2 3 -> 6 needs 2*3 = 6 (cap 6 ok, cap 5 blocks it; 3+2 = 5 != 6).
        assert!(solve(&[2, 3], 6, 6).is_some());
        assert!(solve(&[2, 3], 6, 5).is_none());
        // 7 / 2 is not exact: no way to make 3 from {7, 2} except 7-2=5 (no) -> none.
        assert!(solve(&[7, 2], 3, 100).is_none());
        // 8 / 2 = 4 is exact.
        assert_eq!(solve(&[8, 2], 4, 100).unwrap()[0].op, Op::Div);
    }

    #[test]
    fn unsolvable_instance() {
        // {1, 1}: reachable values are 0, 1, 2 only.
        assert!(solve(&[1, 1], 3, 100).is_none());
    }
}
