//! The list of actions a machine returns.
//!
//! A plain `Vec<A>` cannot be `#[must_use]` (the attribute on an enum does
//! nothing for a vector of it), so a driver could drop a list unread and
//! never send the fence or the metadata call a machine asked for. This
//! wrapper can: ignoring the return of `handle_*` is a warning, and the
//! workspace denies warnings.

/// What a machine asks its driver to do, in order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[must_use = "a machine's actions must be carried out"]
pub struct Actions<A>(Vec<A>);

impl<A> Actions<A> {
    pub fn new() -> Actions<A> {
        Actions(Vec::new())
    }

    pub fn push(&mut self, action: A) {
        self.0.push(action);
    }

    /// Appends `more` after what is there.
    pub fn extend(&mut self, more: Actions<A>) {
        self.0.extend(more.0);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, A> {
        self.0.iter()
    }

    pub fn into_vec(self) -> Vec<A> {
        self.0
    }
}

impl<A> Default for Actions<A> {
    fn default() -> Self {
        Actions::new()
    }
}

impl<A> IntoIterator for Actions<A> {
    type Item = A;
    type IntoIter = std::vec::IntoIter<A>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a, A> IntoIterator for &'a Actions<A> {
    type Item = &'a A;
    type IntoIter = std::slice::Iter<'a, A>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<A> From<Vec<A>> for Actions<A> {
    fn from(v: Vec<A>) -> Self {
        Actions(v)
    }
}

impl<A> std::ops::Deref for Actions<A> {
    type Target = [A];
    fn deref(&self) -> &[A] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_extends_after() {
        let mut a: Actions<u8> = vec![1, 2].into();
        a.extend(vec![3].into());
        a.push(4);
        assert_eq!(a.len(), 4);
        assert_eq!(&a[..], &[1, 2, 3, 4]);
        assert_eq!(a.into_vec(), vec![1, 2, 3, 4]);
    }
}
