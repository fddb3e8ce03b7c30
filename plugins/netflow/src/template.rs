//! Templates and what each field of a record means to the flow schema.
//!
//! A template is compiled once, when it arrives, into a plan: one
//! [`Target`] per field. Decoding a record is then a walk over the plan with
//! no lookups.

/// Length value marking a variable-length field (IPFIX, RFC 7011 §7).
pub const VARLEN: u16 = 65535;

/// One field of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    /// Information element id (without the enterprise bit).
    pub id: u16,
    /// Encoded length, or [`VARLEN`].
    pub len: u16,
    /// Private enterprise number; 0 for IANA elements.
    pub enterprise: u32,
}

/// Where a field's value goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Skip,
    Bytes,
    Packets,
    BytesTotal,
    PacketsTotal,
    Protocol,
    Tos,
    TcpFlags,
    SrcPort,
    DstPort,
    SrcAddr,
    DstAddr,
    NextHop,
    SrcMask,
    DstMask,
    InIf,
    OutIf,
    SrcAs,
    DstAs,
    Vlan,
    Direction,
    /// icmpTypeCodeIPv4 / icmpTypeCodeIPv6 (type << 8 | code).
    IcmpTypeCode,
    /// staIPv4Address (wireless station; Cisco WLC): the source or the
    /// destination, by flowDirection.
    StationAddr,
    /// RFC 5103 reverse counters of a biflow (enterprise 29305).
    ReverseBytes,
    ReversePackets,
    /// The n-th configured extra column (`extra_fields`).
    Extra(u8),
    /// flowStartSysUpTime / flowEndSysUpTime (ms since the device booted).
    StartUptime,
    EndUptime,
    StartSeconds,
    EndSeconds,
    StartMillis,
    EndMillis,
    StartMicros,
    EndMicros,
    StartNanos,
    EndNanos,
    StartDeltaMicros,
    EndDeltaMicros,
    /// systemInitTimeMilliseconds: the boot time, for uptime-relative times.
    SystemInit,
    /// samplerId (48) / selectorId (302): which sampler selected the packets.
    SamplerId,
    /// samplingInterval (34) / samplerRandomInterval (50): 1 in N.
    SamplingInterval,
    /// samplingPacketInterval (305): packets selected in a row.
    PacketInterval,
    /// samplingPacketSpace (306): packets not selected in between.
    PacketSpace,
    /// samplingSize (309): n of random n-out-of-N.
    SamplingSize,
    /// samplingPopulation (310): N of random n-out-of-N.
    SamplingPopulation,
    /// samplingProbability (311, float64).
    SamplingProbability,
    /// selectorAlgorithm (304, RFC 5477).
    SelectorAlgorithm,
    /// dataLinkFrameSize (312): the sampled frame's length on the wire.
    FrameSize,
    /// ipTotalLength (224).
    IpTotalLength,
    /// dataLinkFrameType (408): 1 Ethernet, 2 802.11.
    FrameType,
    /// dataLinkFrameSection (315): the frame's first bytes.
    FrameSection,
    /// ipHeaderPacketSection (313): the IP packet's first bytes.
    IpHeaderSection,
    /// ipPayloadPacketSection (314): the bytes after the IP header.
    IpPayloadSection,
    /// mplsLabelStackSection (316): the label stack and what follows.
    MplsStackSection,
    /// mplsPayloadPacketSection (317): the bytes after the label stack.
    MplsPayloadSection,
}

/// What an IANA element (enterprise 0) means to us.
pub fn target_of(id: u16) -> Target {
    use Target::*;
    match id {
        // initiatorOctets/Packets and responderOctets/Packets (Cisco NSEL and
        // others) describe a biflow like RFC 5103's reverse counters.
        1 | 231 => Bytes,
        2 | 298 => Packets,
        232 => ReverseBytes,
        299 => ReversePackets,
        4 => Protocol,
        5 => Tos,
        6 => TcpFlags,
        7 => SrcPort,
        8 | 27 => SrcAddr,
        9 | 29 => SrcMask,
        10 => InIf,
        11 => DstPort,
        12 | 28 => DstAddr,
        13 | 30 => DstMask,
        32 | 139 => IcmpTypeCode,
        366 => StationAddr,
        14 => OutIf,
        15 | 62 => NextHop,
        16 => SrcAs,
        17 => DstAs,
        21 => EndUptime,
        22 => StartUptime,
        34 | 50 => SamplingInterval,
        48 | 302 => SamplerId,
        58 | 243 => Vlan,
        61 => Direction,
        85 => BytesTotal,
        86 => PacketsTotal,
        150 => StartSeconds,
        151 => EndSeconds,
        152 => StartMillis,
        153 => EndMillis,
        154 => StartMicros,
        155 => EndMicros,
        156 => StartNanos,
        157 => EndNanos,
        158 => StartDeltaMicros,
        159 => EndDeltaMicros,
        160 => SystemInit,
        305 => PacketInterval,
        306 => PacketSpace,
        304 => SelectorAlgorithm,
        309 => SamplingSize,
        310 => SamplingPopulation,
        311 => SamplingProbability,
        312 => FrameSize,
        224 => IpTotalLength,
        408 => FrameType,
        313 => IpHeaderSection,
        314 => IpPayloadSection,
        315 => FrameSection,
        316 => MplsStackSection,
        317 => MplsPayloadSection,
        _ => Skip,
    }
}

/// Private enterprise number of RFC 5103 reverse elements.
pub const REVERSE_PEN: u32 = 29305;

/// What an RFC 5103 reverse element means to us.
pub fn reverse_target_of(id: u16) -> Target {
    match id {
        1 | 85 => Target::ReverseBytes,
        2 | 86 => Target::ReversePackets,
        _ => Target::Skip,
    }
}

/// A compiled template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// Fields, scope fields first for options templates.
    pub fields: Box<[FieldSpec]>,
    /// One target per field.
    pub plan: Box<[Target]>,
    /// Number of leading scope fields (0 for a data template).
    pub scope_fields: u16,
    /// Smallest record length (variable-length fields count their length
    /// prefix only); never 0.
    pub min_len: usize,
    /// Whether any field is variable-length.
    pub varlen: bool,
}

impl Template {
    /// Compiles `fields`; `None` if the template could not describe a record
    /// (no fields, or only zero-length ones).
    /// `extra_ids` are the IANA elements configured as extra columns, in
    /// column order.
    pub fn new(fields: Vec<FieldSpec>, scope_fields: u16, extra_ids: &[u16]) -> Option<Self> {
        let mut min_len = 0usize;
        let mut varlen = false;
        for f in &fields {
            if f.len == VARLEN {
                varlen = true;
                min_len += 1;
            } else {
                min_len += f.len as usize;
            }
        }
        if fields.is_empty() || min_len == 0 {
            return None;
        }
        let plan = fields
            .iter()
            .map(|f| match f.enterprise {
                0 => match extra_ids.iter().position(|x| *x == f.id) {
                    Some(i) => Target::Extra(i as u8),
                    None => target_of(f.id),
                },
                REVERSE_PEN => reverse_target_of(f.id),
                _ => Target::Skip,
            })
            .collect();
        Some(Self { fields: fields.into_boxed_slice(), plan, scope_fields, min_len, varlen })
    }

    /// Whether this is an options template.
    pub fn is_options(&self) -> bool {
        self.scope_fields > 0
    }

    /// Data or options.
    pub fn kind(&self) -> TemplateKind {
        if self.is_options() { TemplateKind::Options } else { TemplateKind::Data }
    }
}

/// What a template describes: flow records, or options (sampler tables,
/// exporter settings, …). IPFIX withdraws all templates of one kind at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateKind {
    Data,
    Options,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_that_describe_nothing_are_refused() {
        assert!(Template::new(vec![], 0, &[]).is_none());
        assert!(Template::new(vec![FieldSpec { id: 1, len: 0, enterprise: 0 }], 0, &[]).is_none());
        let varlen = Template::new(vec![FieldSpec { id: 1, len: VARLEN, enterprise: 0 }], 0, &[]).unwrap();
        assert!(varlen.varlen && varlen.min_len == 1);
    }
}
