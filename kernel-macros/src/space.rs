//! The variant space as pure data: axes, prune rules, and the cross product.
//!
//! Nothing here knows about tokens. Axis values are indices into the declared
//! lists, and a variant is a [`Point`]: one index per axis, in [`Axis::ALL`]
//! order.

/// Number of axes.
pub(crate) const AXES: usize = 6;

/// One value index per axis, in [`Axis::ALL`] order.
pub(crate) type Point = [usize; AXES];

/// An axis of the space, in nesting order (format outermost).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Axis {
    Format,
    TileRows,
    Columns,
    Sparsity,
    Activation,
    Isa,
}

impl Axis {
    /// Every axis, in nesting order; `Axis::ALL[a as usize] == a`.
    pub(crate) const ALL: [Axis; AXES] =
        [Axis::Format, Axis::TileRows, Axis::Columns, Axis::Sparsity, Axis::Activation, Axis::Isa];

    /// The axis name used in prune rules.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Axis::Format => "format",
            Axis::TileRows => "tile_rows",
            Axis::Columns => "columns",
            Axis::Sparsity => "sparsity",
            Axis::Activation => "activation",
            Axis::Isa => "isa",
        }
    }

    /// The axis with this prune-rule name.
    pub(crate) fn from_name(name: &str) -> Option<Axis> {
        Axis::ALL.into_iter().find(|axis| axis.name() == name)
    }
}

/// `axis = value` (`equal`) or `axis != value`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Condition {
    pub(crate) axis: Axis,
    pub(crate) value: usize,
    pub(crate) equal: bool,
}

impl Condition {
    fn holds(&self, point: &Point) -> bool {
        (point[self.axis as usize] == self.value) == self.equal
    }
}

/// A prune rule: removes every variant for which all conditions hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rule {
    pub(crate) conditions: Vec<Condition>,
}

impl Rule {
    /// Whether this rule removes `point`.
    pub(crate) fn matches(&self, point: &Point) -> bool {
        self.conditions.iter().all(|c| c.holds(point))
    }
}

/// Size of the full cross product of axes with `lens` values each.
pub(crate) fn declared(lens: Point) -> usize {
    lens.iter().product()
}

/// Every point of the cross product that no rule removes, in nesting order:
/// the first axis (format) varies slowest, the last (isa) fastest.
pub(crate) fn enumerate(lens: Point, rules: &[Rule]) -> Vec<Point> {
    let mut out = Vec::new();
    let mut point = [0; AXES];
    for _ in 0..declared(lens) {
        if !rules.iter().any(|rule| rule.matches(&point)) {
            out.push(point);
        }
        // Odometer step, last axis fastest.
        for axis in (0..AXES).rev() {
            point[axis] += 1;
            if point[axis] < lens[axis] {
                break;
            }
            point[axis] = 0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(axis: Axis, value: usize, equal: bool) -> Condition {
        Condition { axis, value, equal }
    }

    fn rule(conditions: &[Condition]) -> Rule {
        Rule { conditions: conditions.to_vec() }
    }

    #[test]
    fn axis_names_round_trip() {
        for (i, axis) in Axis::ALL.into_iter().enumerate() {
            assert_eq!(axis as usize, i);
            assert_eq!(Axis::from_name(axis.name()), Some(axis));
        }
        assert_eq!(Axis::from_name("formats"), None);
    }

    #[test]
    fn full_product_in_nesting_order() {
        let points = enumerate([2, 1, 1, 1, 1, 3], &[]);
        assert_eq!(
            points,
            [
                [0, 0, 0, 0, 0, 0],
                [0, 0, 0, 0, 0, 1],
                [0, 0, 0, 0, 0, 2],
                [1, 0, 0, 0, 0, 0],
                [1, 0, 0, 0, 0, 1],
                [1, 0, 0, 0, 0, 2]
            ]
        );
        assert_eq!(declared([2, 1, 1, 1, 1, 3]), 6);
        assert_eq!(enumerate([2, 3, 4, 5, 6, 7], &[]).len(), declared([2, 3, 4, 5, 6, 7]));
    }

    #[test]
    fn a_rule_needs_all_its_conditions() {
        // Remove (isa = 1, activation = 0) only.
        let rules = [rule(&[cond(Axis::Isa, 1, true), cond(Axis::Activation, 0, true)])];
        let points = enumerate([1, 1, 1, 1, 2, 2], &rules);
        assert_eq!(points, [[0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 1, 1]]);
    }

    #[test]
    fn any_rule_removes() {
        let rules = [rule(&[cond(Axis::Format, 0, true)]), rule(&[cond(Axis::TileRows, 0, false)])];
        let points = enumerate([2, 3, 1, 1, 1, 1], &rules);
        assert_eq!(points, [[1, 0, 0, 0, 0, 0]]);
    }

    #[test]
    fn rules_can_remove_everything() {
        let rules = [rule(&[cond(Axis::Isa, 0, true)]), rule(&[cond(Axis::Isa, 0, false)])];
        assert!(enumerate([3, 2, 2, 2, 2, 2], &rules).is_empty());
    }

    #[test]
    fn contradictory_rule_removes_nothing() {
        let rules = [rule(&[cond(Axis::Isa, 0, true), cond(Axis::Isa, 1, true)])];
        assert_eq!(enumerate([1, 1, 1, 1, 1, 2], &rules).len(), 2);
    }

    /// The declaration in the crate docs: 47 variants per format.
    #[test]
    fn documented_example() {
        // tile_rows [1, 2, 4, 8]; columns [1, 4]; sparsity [dense, colsparse];
        // activation [f32, q8]; isa [scalar, avx2, avx512, avx512vnni].
        let (f32_, q8) = (0, 1);
        let (scalar, vnni) = (0, 3);
        let colsparse = 1;
        let one = 0;
        let rules = [
            rule(&[cond(Axis::Isa, vnni, true), cond(Axis::Activation, f32_, true)]),
            rule(&[cond(Axis::Isa, scalar, true), cond(Axis::TileRows, one, false)]),
            rule(&[cond(Axis::Sparsity, colsparse, true), cond(Axis::Activation, q8, true)]),
            rule(&[cond(Axis::Sparsity, colsparse, true), cond(Axis::TileRows, one, false)]),
            rule(&[cond(Axis::Sparsity, colsparse, true), cond(Axis::Columns, one, false)]),
        ];
        let lens = [24, 4, 2, 2, 2, 4];
        assert_eq!(declared(lens), 3072);
        let points = enumerate(lens, &rules);
        assert_eq!(points.len(), 24 * 47);
        // Column-sparse survives only as r1.c1.f32 on scalar, avx2 and avx512.
        let sparse: Vec<_> = points.iter().filter(|p| p[0] == 0 && p[3] == colsparse).collect();
        assert_eq!(sparse, [&[0, 0, 0, 1, 0, 0], &[0, 0, 0, 1, 0, 1], &[0, 0, 0, 1, 0, 2]]);
    }
}
