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

impl Target {
    /// Whether values of this target are ones only some templates carry
    /// (options data, PSAMP sections, biflows, wireless stations): kept
    /// apart from the per-record scratch every template fills.
    pub fn is_rare(self) -> bool {
        use Target::*;
        matches!(
            self,
            StationAddr
                | ReverseBytes
                | ReversePackets
                | SystemInit
                | SamplingInterval
                | PacketInterval
                | PacketSpace
                | SamplingSize
                | SamplingPopulation
                | SamplingProbability
                | SelectorAlgorithm
                | FrameSize
                | IpTotalLength
                | FrameType
                | FrameSection
                | IpHeaderSection
                | IpPayloadSection
                | MplsStackSection
                | MplsPayloadSection
        )
    }
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
    /// Each field's (offset, length) in its record when no field is
    /// variable-length (empty otherwise): records then decode without
    /// walking lengths or checking bounds field by field.
    pub spans: Box<[(u32, u16)]>,
    /// Whether any field goes where only some templates put values
    /// ([`Target::is_rare`]): the decoder resets that part of its scratch
    /// per record only for these.
    pub rare: bool,
    /// The set-at-a-time plan, for a flow template whose records the
    /// decoder can fill column by column ([`Template::columnar`]).
    pub columnar: Option<Box<[Op]>>,
}

/// A column of the flow schema a field of a columnar template fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Bytes,
    Packets,
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
    /// The ICMP type and code, into the destination port where the record
    /// has none (or zero): applied after every other field.
    Icmp,
    Start(Clock),
    End(Clock),
}

/// How a time field counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    Seconds,
    Millis,
    /// NTP format (the micro- and nanosecond elements).
    Ntp,
    /// Microseconds before the export time.
    DeltaMicros,
    /// Milliseconds of the exporter's uptime.
    Uptime,
}

/// One field of a columnar template: where it is in each record and the
/// column it fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op {
    pub at: u32,
    pub len: u16,
    pub column: Column,
}

/// The columnar plan of a fixed-length flow template, or `None` when its
/// records need the record-at-a-time walk: options, variable-length fields,
/// extra columns, per-record sampler ids, or any [`Target::is_rare`] field.
///
/// The plan says what the walk would: a field's counters are used only
/// without the delta counters; the highest-ranking kind of time
/// (absolute, then delta, then uptime) wins and within it the last field;
/// an address field that is neither 4 nor 16 bytes fills nothing.
fn columnar_plan(
    plan: &[Target],
    spans: &[(u32, u16)],
    scope_fields: u16,
    varlen: bool,
) -> Option<Box<[Op]>> {
    use Target::*;
    if varlen || scope_fields > 0 {
        return None;
    }
    let rank = |t: Target| match t {
        StartSeconds | StartMillis | StartMicros | StartNanos | EndSeconds | EndMillis | EndMicros
        | EndNanos => 3,
        StartDeltaMicros | EndDeltaMicros => 2,
        StartUptime | EndUptime => 1,
        _ => 0,
    };
    let is_start = |t: Target| {
        matches!(t, StartSeconds | StartMillis | StartMicros | StartNanos | StartDeltaMicros | StartUptime)
    };
    let start_rank = plan.iter().filter(|t| is_start(**t)).map(|t| rank(*t)).max().unwrap_or(0);
    let end_rank =
        plan.iter().filter(|t| rank(**t) > 0 && !is_start(**t)).map(|t| rank(*t)).max().unwrap_or(0);
    let clock = |t: Target| match t {
        StartSeconds | EndSeconds => Clock::Seconds,
        StartMillis | EndMillis => Clock::Millis,
        StartDeltaMicros | EndDeltaMicros => Clock::DeltaMicros,
        StartUptime | EndUptime => Clock::Uptime,
        _ => Clock::Ntp,
    };
    let mut ops: Vec<Op> = Vec::with_capacity(plan.len());
    for (&target, &(at, len)) in plan.iter().zip(spans) {
        let column = match target {
            Skip => continue,
            Extra(_) | SamplerId => return None,
            t if t.is_rare() => return None,
            Bytes => Column::Bytes,
            Packets => Column::Packets,
            BytesTotal if !plan.contains(&Bytes) => Column::Bytes,
            PacketsTotal if !plan.contains(&Packets) => Column::Packets,
            BytesTotal | PacketsTotal => continue,
            Protocol => Column::Protocol,
            Tos => Column::Tos,
            TcpFlags => Column::TcpFlags,
            SrcPort => Column::SrcPort,
            DstPort => Column::DstPort,
            SrcAddr | DstAddr | NextHop if len != 4 && len != 16 => continue,
            SrcAddr => Column::SrcAddr,
            DstAddr => Column::DstAddr,
            NextHop => Column::NextHop,
            SrcMask => Column::SrcMask,
            DstMask => Column::DstMask,
            InIf => Column::InIf,
            OutIf => Column::OutIf,
            SrcAs => Column::SrcAs,
            DstAs => Column::DstAs,
            Vlan => Column::Vlan,
            Direction => Column::Direction,
            IcmpTypeCode => Column::Icmp,
            t if is_start(t) && rank(t) == start_rank => Column::Start(clock(t)),
            t if !is_start(t) && rank(t) > 0 && rank(t) == end_rank => Column::End(clock(t)),
            _ => continue,
        };
        // The last ICMP field is the one the record's type and code are.
        if column == Column::Icmp {
            ops.retain(|o| o.column != Column::Icmp);
        }
        ops.push(Op { at, len, column });
    }
    // The ICMP type and code read the destination port every other field
    // has filled.
    ops.sort_by_key(|o| o.column == Column::Icmp);
    Some(ops.into_boxed_slice())
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
            .collect::<Box<[Target]>>();
        let spans = if varlen {
            Box::default()
        } else {
            let mut at = 0u32;
            fields
                .iter()
                .map(|f| {
                    let span = (at, f.len);
                    at += f.len as u32;
                    span
                })
                .collect()
        };
        let rare = plan.iter().any(|t| t.is_rare());
        let columnar = columnar_plan(&plan, &spans, scope_fields, varlen);
        Some(Self {
            fields: fields.into_boxed_slice(),
            plan,
            scope_fields,
            min_len,
            varlen,
            spans,
            rare,
            columnar,
        })
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
