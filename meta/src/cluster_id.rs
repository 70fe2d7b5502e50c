//! The cluster id: a random non-zero 64-bit value a store creates once,
//! the first time it is asked (the embedded store when it first starts,
//! etcd on the first `cluster_id` call, by a create-if-absent
//! transaction), and never changes. Nodes keep it in their data directory
//! so that a directory is never served to another cluster.

/// A fresh random cluster id, never 0 (0 means "none yet" wherever a
/// cluster id is stored).
pub fn new_cluster_id() -> u64 {
    loop {
        let id: u64 = rand::random();
        if id != 0 {
            return id;
        }
    }
}

/// How a cluster id is written for people and in text values: 16 hex
/// digits.
pub fn format_cluster_id(id: u64) -> String {
    format!("{id:016x}")
}

/// The inverse of [`format_cluster_id`]: exactly 16 hex digits, not 0.
pub fn parse_cluster_id(text: &str) -> Option<u64> {
    if text.len() != 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(text, 16).ok().filter(|&id| id != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_are_non_zero_and_parse_back() {
        for _ in 0..100 {
            let id = new_cluster_id();
            assert_ne!(id, 0);
            assert_eq!(parse_cluster_id(&format_cluster_id(id)), Some(id));
        }
        assert_eq!(format_cluster_id(0xab), "00000000000000ab");
        assert_eq!(parse_cluster_id("00000000000000ab"), Some(0xab));
        assert_eq!(parse_cluster_id("0000000000000000"), None);
        assert_eq!(parse_cluster_id("ab"), None);
        assert_eq!(parse_cluster_id("+00000000000000a"), None);
        assert_eq!(parse_cluster_id("00000000000000zz"), None);
    }
}
