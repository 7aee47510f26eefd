//! Names of the streams, subjects and buckets, under one namespace so that
//! several engines (or test runs) can share a NATS cluster.

use hookrelay_core::Partition;

/// The names of one engine's JetStream objects.
#[derive(Clone, Debug)]
pub struct Names {
    /// Lower-case prefix of subjects and buckets (`hr`).
    ns: String,
}

impl Names {
    /// Names under `namespace` (letters, digits, `_` and `-`; lower-cased).
    pub fn new(namespace: &str) -> Self {
        let ns: String = namespace
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect::<String>()
            .to_ascii_lowercase();
        Self {
            ns: if ns.is_empty() { "hr".into() } else { ns },
        }
    }

    /// The stream of a log partition: `HR_EV_<p>`.
    pub fn event_stream(&self, p: Partition) -> String {
        format!("{}_EV_{p}", self.ns.to_ascii_uppercase())
    }

    /// The subject of a log partition: `hr.ev.<p>`.
    pub fn event_subject(&self, p: Partition) -> String {
        format!("{}.ev.{p}", self.ns)
    }

    /// The idempotency-key bucket.
    pub fn idem_bucket(&self) -> String {
        format!("{}_idem", self.ns)
    }

    /// The configuration stream: `HR_CFG`.
    pub fn config_stream(&self) -> String {
        format!("{}_CFG", self.ns.to_ascii_uppercase())
    }

    /// Every subject of the configuration stream: `hr.cfg.>`.
    pub fn config_subjects(&self) -> String {
        format!("{}.cfg.>", self.ns)
    }

    /// The subject of one owner's records: `hr.cfg.<kind>.<hex id>`.
    pub fn config_subject(&self, kind: &str, hex_id: &str) -> String {
        format!("{}.cfg.{kind}.{hex_id}", self.ns)
    }

    /// The delivery-state stream: `HR_DS`.
    pub fn state_stream(&self) -> String {
        format!("{}_DS", self.ns.to_ascii_uppercase())
    }

    /// Every subject of the delivery-state stream: `hr.ds.>`.
    pub fn state_subjects(&self) -> String {
        format!("{}.ds.>", self.ns)
    }

    /// A delivery's state subject in partition `p`: `hr.ds.<p>.<rest>`.
    pub fn state_subject(&self, p: Partition, rest: &str) -> String {
        format!("{}.ds.{p}.{rest}", self.ns)
    }

    /// The attempt stream: `HR_ATT`.
    pub fn attempt_stream(&self) -> String {
        format!("{}_ATT", self.ns.to_ascii_uppercase())
    }

    /// Every subject of the attempt stream: `hr.att.>`.
    pub fn attempt_subjects(&self) -> String {
        format!("{}.att.>", self.ns)
    }

    /// A delivery's attempt subject: `hr.att.<webhook hex>.<rest>`.
    pub fn attempt_subject(&self, webhook_hex: &str, rest: &str) -> String {
        format!("{}.att.{webhook_hex}.{rest}", self.ns)
    }

    /// The command stream: `HR_CMD`.
    pub fn command_stream(&self) -> String {
        format!("{}_CMD", self.ns.to_ascii_uppercase())
    }

    /// Every subject of the command stream: `hr.cmd.>`.
    pub fn command_subjects(&self) -> String {
        format!("{}.cmd.>", self.ns)
    }

    /// The commands of partition `p`: `hr.cmd.<p>`.
    pub fn command_subject(&self, p: Partition) -> String {
        format!("{}.cmd.{p}", self.ns)
    }

    /// The bucket of partition leases and node heartbeats.
    pub fn lease_bucket(&self) -> String {
        format!("{}_own", self.ns)
    }

    /// The bucket of cluster-wide settings (the partition count).
    pub fn meta_bucket(&self) -> String {
        format!("{}_meta", self.ns)
    }
}

/// `id` as lower-case hex: any id becomes a valid subject token.
pub(crate) fn hex(id: &str) -> String {
    id.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The id a [`hex`] token stands for.
pub(crate) fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_namespaced_and_safe() {
        let n = Names::new("Test.1 x");
        assert_eq!(n.event_stream(3), "TEST1X_EV_3");
        assert_eq!(n.event_subject(3), "test1x.ev.3");
        assert_eq!(n.idem_bucket(), "test1x_idem");
        assert_eq!(Names::new("").meta_bucket(), "hr_meta");
    }
}
