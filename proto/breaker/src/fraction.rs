//! A fraction n/d, kept as given: the rate rules of a policy are fractions.

use std::fmt;

/// The largest denominator (and so window) a fraction may have.
pub const MAX_DENOMINATOR: u32 = 10_000;

/// A fraction n/d with 1 <= n <= d <= 10,000, kept as given (5/10 is not 1/2: its
/// denominator is the size of the window it is judged over).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fraction {
    numerator: u32,
    denominator: u32,
}

/// Why a fraction is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidFraction {
    /// The numerator is 0.
    ZeroNumerator,
    /// The denominator is 0.
    ZeroDenominator,
    /// The numerator is greater than the denominator.
    NumeratorAboveDenominator,
    /// The denominator is above 10,000.
    DenominatorTooLarge,
}

impl fmt::Display for InvalidFraction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ZeroNumerator => "numerator must be at least 1",
            Self::ZeroDenominator => "denominator must be at least 1",
            Self::NumeratorAboveDenominator => "numerator must not exceed the denominator",
            Self::DenominatorTooLarge => "denominator must be at most 10000",
        })
    }
}

impl Fraction {
    /// 1/1: trip on the first failure (the library's default).
    pub const ONE: Fraction = Fraction {
        numerator: 1,
        denominator: 1,
    };

    /// A fraction, checked: 1 <= numerator <= denominator <= 10,000.
    pub fn try_new(numerator: u32, denominator: u32) -> Result<Self, InvalidFraction> {
        if denominator == 0 {
            Err(InvalidFraction::ZeroDenominator)
        } else if numerator == 0 {
            Err(InvalidFraction::ZeroNumerator)
        } else if denominator > MAX_DENOMINATOR {
            Err(InvalidFraction::DenominatorTooLarge)
        } else if numerator > denominator {
            Err(InvalidFraction::NumeratorAboveDenominator)
        } else {
            Ok(Fraction {
                numerator,
                denominator,
            })
        }
    }

    /// n.
    pub fn numerator(self) -> u32 {
        self.numerator
    }

    /// d, also the size of the window the fraction is judged over.
    pub fn denominator(self) -> u32 {
        self.denominator
    }

    /// Whether `count / len >= n / d`, exactly (no floating point). False when `len` is 0.
    pub fn reached_by(self, count: u32, len: u32) -> bool {
        len > 0
            && u64::from(count) * u64::from(self.denominator) >= u64::from(self.numerator) * u64::from(len)
    }

    /// [`Fraction::reached_by`] for the u64 counts of a time window.
    pub fn reached_by_wide(self, count: u64, len: u64) -> bool {
        len > 0
            && u128::from(count) * u128::from(self.denominator)
                >= u128::from(self.numerator) * u128::from(len)
    }
}

impl fmt::Display for Fraction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.numerator, self.denominator)
    }
}
