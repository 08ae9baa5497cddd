//! English plurals exactly as kro computes them (`flect.Pluralize(strings.ToLower(kind))`,
//! gobuffalo/flect v1), so a cluster migrated from kro keeps its CRD names.

/// flect's upper-case acronyms; kro lowercases the kind, so only these whole-word matches apply.
const ACRONYMS: &[&str] = &[
    "OK", "UTF8", "HTML", "JSON", "JWT", "ID", "UUID", "SQL", "ACK", "ACL", "ADSL", "AES", "ANSI", "API",
    "ARP", "ATM", "BGP", "BSS", "CCITT", "CHAP", "CIDR", "CIR", "CLI", "CPE", "CPU", "CRC", "CRT", "CSMA",
    "CMOS", "DCE", "DEC", "DES", "DHCP", "DNS", "DRAM", "DSL", "DSLAM", "DTE", "DMI", "EHA", "EIA", "EIGRP",
    "EOF", "ESS", "FCC", "FCS", "FDDI", "FTP", "GBIC", "GEPOF", "HDLC", "HTTP", "HTTPS", "IANA", "ICMP",
    "IDF", "IDS", "IEEE", "IETF", "IMAP", "IP", "IPS", "ISDN", "ISP", "LACP", "LAN", "LAPB", "LAPF", "LLC",
    "MAC", "MC", "MDF", "MIB", "MPLS", "MTU", "NAC", "NAT", "NBMA", "NIC", "NRZ", "NRZI", "NVRAM", "OIDC",
    "OSI", "OSPF", "OUI", "PAP", "PAT", "PC", "PIM", "PCM", "PDU", "POP3", "POTS", "PPP", "PPTP", "PTT",
    "PVST", "RAM", "RARP", "RFC", "RIP", "RLL", "ROM", "RSTP", "RTP", "RCP", "SDLC", "SFD", "SFP", "SLARP",
    "SLIP", "SMTP", "SNA", "SNAP", "SNMP", "SOF", "SRAM", "SSH", "SSID", "STP", "SYN", "TDM", "TFTP", "TIA",
    "TOFU", "UDP", "URL", "URI", "USB", "UTP", "VC", "VLAN", "VLSM", "VPN", "W3C", "WAN", "WEP", "WPA",
    "WWW",
];

/// flect's irregular words, singular to plural.
const IRREGULAR: &[(&str, &str)] = &[
    ("human", "humans"),
    ("matrix", "matrices"),
    ("vertix", "vertices"),
    ("index", "indices"),
    ("mouse", "mice"),
    ("louse", "lice"),
    ("ress", "resses"),
    ("ox", "oxen"),
    ("quiz", "quizzes"),
    ("series", "series"),
    ("octopus", "octopi"),
    ("equipment", "equipment"),
    ("information", "information"),
    ("rice", "rice"),
    ("money", "money"),
    ("species", "species"),
    ("fish", "fish"),
    ("sheep", "sheep"),
    ("jeans", "jeans"),
    ("police", "police"),
    ("dear", "dear"),
    ("goose", "geese"),
    ("tooth", "teeth"),
    ("foot", "feet"),
    ("bus", "buses"),
    ("fez", "fezzes"),
    ("piano", "pianos"),
    ("halo", "halos"),
    ("photo", "photos"),
    ("aircraft", "aircraft"),
    ("alumna", "alumnae"),
    ("alumnus", "alumni"),
    ("analysis", "analyses"),
    ("antenna", "antennas"),
    ("antithesis", "antitheses"),
    ("apex", "apexes"),
    ("appendix", "appendices"),
    ("axis", "axes"),
    ("bacillus", "bacilli"),
    ("bacterium", "bacteria"),
    ("basis", "bases"),
    ("beau", "beaus"),
    ("bison", "bison"),
    ("bureau", "bureaus"),
    ("campus", "campuses"),
    ("château", "châteaux"),
    ("codex", "codices"),
    ("concerto", "concertos"),
    ("corpus", "corpora"),
    ("crisis", "crises"),
    ("curriculum", "curriculums"),
    ("deer", "deer"),
    ("diagnosis", "diagnoses"),
    ("die", "dice"),
    ("dwarf", "dwarves"),
    ("ellipsis", "ellipses"),
    ("erratum", "errata"),
    ("faux pas", "faux pas"),
    ("focus", "foci"),
    ("formula", "formulas"),
    ("fungus", "fungi"),
    ("genus", "genera"),
    ("graffito", "graffiti"),
    ("grouse", "grouse"),
    ("half", "halves"),
    ("hoof", "hooves"),
    ("hypothesis", "hypotheses"),
    ("larva", "larvae"),
    ("libretto", "librettos"),
    ("loaf", "loaves"),
    ("locus", "loci"),
    ("minutia", "minutiae"),
    ("moose", "moose"),
    ("nebula", "nebulae"),
    ("nucleus", "nuclei"),
    ("oasis", "oases"),
    ("offspring", "offspring"),
    ("opus", "opera"),
    ("parenthesis", "parentheses"),
    ("phenomenon", "phenomena"),
    ("phylum", "phyla"),
    ("prognosis", "prognoses"),
    ("radius", "radiuses"),
    ("referendum", "referendums"),
    ("salmon", "salmon"),
    ("shrimp", "shrimp"),
    ("stimulus", "stimuli"),
    ("stratum", "strata"),
    ("swine", "swine"),
    ("syllabus", "syllabi"),
    ("symposium", "symposiums"),
    ("synopsis", "synopses"),
    ("tableau", "tableaus"),
    ("thesis", "theses"),
    ("thief", "thieves"),
    ("trout", "trout"),
    ("tuna", "tuna"),
    ("vertebra", "vertebrae"),
    ("vita", "vitae"),
    ("vortex", "vortices"),
    ("wharf", "wharves"),
    ("wife", "wives"),
    ("wolf", "wolves"),
    ("datum", "data"),
    ("testis", "testes"),
    ("alias", "aliases"),
    ("shoe", "shoes"),
    ("news", "news"),
    ("ovum", "ova"),
    ("foo", "foos"),
];

/// flect's suffix rules in registration order; each `AddPlural(suffix, repl)` also registers
/// `repl` as already plural.
const SUFFIXES: &[(&str, &str)] = &[
    ("campus", "campuses"),
    ("man", "men"),
    ("tz", "tzes"),
    ("alias", "aliases"),
    ("oasis", "oasis"),
    ("wife", "wives"),
    ("basis", "basis"),
    ("atum", "ata"),
    ("adium", "adia"),
    ("actus", "acti"),
    ("irus", "iri"),
    ("iterion", "iteria"),
    ("dium", "diums"),
    ("ovum", "ova"),
    ("ize", "izes"),
    ("dge", "dges"),
    ("focus", "foci"),
    ("child", "children"),
    ("oaf", "oaves"),
    ("randum", "randa"),
    ("base", "bases"),
    ("atus", "atuses"),
    ("ode", "odes"),
    ("person", "people"),
    ("hello", "hellos"),
    ("va", "vae"),
    ("leus", "li"),
    ("oot", "eet"),
    ("oose", "eese"),
    ("box", "boxes"),
    ("ium", "ia"),
    ("sis", "ses"),
    ("nna", "nnas"),
    ("eses", "esis"),
    ("stis", "stes"),
    ("ex", "ices"),
    ("ula", "ulae"),
    ("isis", "ises"),
    ("use", "uses"),
    ("lf", "lves"),
    ("rf", "rves"),
    ("afe", "aves"),
    ("bfe", "bves"),
    ("cfe", "cves"),
    ("dfe", "dves"),
    ("efe", "eves"),
    ("gfe", "gves"),
    ("hfe", "hves"),
    ("ife", "ives"),
    ("jfe", "jves"),
    ("kfe", "kves"),
    ("lfe", "lves"),
    ("mfe", "mves"),
    ("nfe", "nves"),
    ("ofe", "oves"),
    ("pfe", "pves"),
    ("qfe", "qves"),
    ("rfe", "rves"),
    ("sfe", "sves"),
    ("tfe", "tves"),
    ("ufe", "uves"),
    ("vfe", "vves"),
    ("wfe", "wves"),
    ("xfe", "xves"),
    ("yfe", "yves"),
    ("zfe", "zves"),
    ("hive", "hives"),
    ("quy", "quies"),
    ("by", "bies"),
    ("cy", "cies"),
    ("dy", "dies"),
    ("fy", "fies"),
    ("gy", "gies"),
    ("hy", "hies"),
    ("jy", "jies"),
    ("ky", "kies"),
    ("ly", "lies"),
    ("my", "mies"),
    ("ny", "nies"),
    ("py", "pies"),
    ("qy", "qies"),
    ("ry", "ries"),
    ("sy", "sies"),
    ("ty", "ties"),
    ("vy", "vies"),
    ("wy", "wies"),
    ("xy", "xies"),
    ("zy", "zies"),
    ("x", "xes"),
    ("ch", "ches"),
    ("ss", "sses"),
    ("sh", "shes"),
    ("oe", "oes"),
    ("io", "ios"),
    ("o", "oes"),
];

/// The plural resource name of `kind`, as kro derives it.
pub(crate) fn plural_of_kind(kind: &str) -> String {
    pluralize(&kind.to_lowercase())
}

/// flect's `Pluralize` for a single lower-case word.
pub(crate) fn pluralize(word: &str) -> String {
    if word.is_empty() {
        return String::new();
    }
    if ACRONYMS.contains(&word.to_uppercase().as_str()) {
        return if word.ends_with(['s', 'S']) {
            format!("{word}es")
        } else {
            format!("{word}s")
        };
    }
    let lower = word.to_lowercase();
    if IRREGULAR.iter().any(|(_, plural)| *plural == lower) {
        return word.to_string();
    }
    if let Some((_, plural)) = IRREGULAR.iter().find(|(single, _)| *single == lower) {
        return (*plural).to_string();
    }
    for (suffix, repl) in SUFFIXES {
        if lower.ends_with(suffix) {
            return format!("{}{repl}", &word[..word.len() - suffix.len()]);
        }
        if lower.ends_with(repl) {
            return word.to_string();
        }
    }
    if lower.ends_with('s') {
        word.to_string()
    } else {
        format!("{word}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_kinds_pluralize_as_kro_names_their_crds() {
        let cases = [
            ("WebApp", "webapps"),
            ("Application", "applications"),
            ("Policy", "policies"),
            ("Ingress", "ingresses"),
            ("Index", "indices"),
            ("Person", "people"),
            ("Database", "databases"),
            ("Proxy", "proxies"),
            ("Status", "statuses"),
            ("Box", "boxes"),
            ("Cache", "caches"),
            ("Gateway", "gateways"),
            ("Address", "addresses"),
            ("Bus", "buses"),
            ("Child", "children"),
            ("Leaf", "leafs"),
            ("Wolf", "wolves"),
            ("Datum", "data"),
            ("Series", "series"),
            ("Api", "apis"),
            ("Dns", "dnses"),
            ("Echo", "echoes"),
            ("Radio", "radios"),
            ("Query", "queries"),
            ("Virus", "viri"),
            ("Analysis", "analyses"),
            ("Vertex", "vertices"),
            ("Schema", "schemas"),
            ("Matrix", "matrices"),
            ("Quiz", "quizzes"),
            ("TenantEnvironment", "tenantenvironments"),
            ("Sheep", "sheep"),
        ];
        for (kind, plural) in cases {
            assert_eq!(plural_of_kind(kind), plural, "{kind}");
        }
    }
}
