//! Small matchers the stateful overlays share: path templates (`/api/v2/widgets/{id}`) and SDK
//! version ranges (`>=150, <200`). Plain functions over strings.

use std::cmp::Ordering;

/// One segment of a path template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    /// A segment that must be exactly this text.
    Lit(String),
    /// A parameter: any one non-empty segment, named.
    Param(String),
}

/// A path template: literal segments and `{name}` parameters, each matching one non-empty segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    /// The template as written.
    text: String,
    /// Its segments after the leading `/` (a trailing `/` ignored).
    segs: Vec<Seg>,
}

impl PathTemplate {
    /// Parses `/a/{b}/c`; a template starts with `/` and names each parameter once.
    pub fn parse(text: &str) -> Result<PathTemplate, String> {
        if !text.starts_with('/') {
            return Err(format!("`{text}` is not a path template (it starts with /, e.g. /api/v2/widgets/{{id}})"));
        }
        let mut segs = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        for s in text.trim_end_matches('/').split('/').skip(1) {
            if let Some(name) = s.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
                if name.is_empty() || names.contains(&name) {
                    return Err(format!("`{text}`: parameter `{{{name}}}` is empty or named twice"));
                }
                names.push(name);
                segs.push(Seg::Param(name.to_string()));
            } else if s.contains('{') || s.contains('}') {
                return Err(format!("`{text}`: a parameter takes a whole segment, as in /widgets/{{id}}"));
            } else {
                segs.push(Seg::Lit(s.to_string()));
            }
        }
        Ok(PathTemplate { text: text.to_string(), segs })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The parameters of `path` when it matches: (name, value) in order.
    pub fn matches<'p>(&self, path: &'p str) -> Option<Vec<(&str, &'p str)>> {
        let mut out = Vec::new();
        let mut parts = path.trim_end_matches('/').split('/').skip(1);
        for seg in &self.segs {
            let p = parts.next()?;
            match seg {
                Seg::Lit(l) if l == p => {}
                Seg::Lit(_) => return None,
                Seg::Param(_) if p.is_empty() => return None,
                Seg::Param(n) => out.push((n.as_str(), p)),
            }
        }
        parts.next().is_none().then_some(out)
    }

    /// The id a match names: the parameter `id` if there is one, else the last parameter.
    pub fn id_of<'p>(&self, path: &'p str) -> Option<&'p str> {
        let params = self.matches(path)?;
        params.iter().find(|(n, _)| *n == "id").or(params.last()).map(|(_, v)| *v)
    }
}

/// A dotted version such as `211.0.0` (missing parts read as 0; a suffix such as `-beta` is ignored).
#[derive(Debug, Clone)]
pub struct Version(Vec<u64>);

impl PartialEq for Version {
    /// Equal by number, not by spelling: `1.2` equals `1.2.0`.
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Version {}

impl std::fmt::Display for Version {
    /// The numbers joined by dots (without any suffix the text had).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(u64::to_string).collect();
        f.write_str(&parts.join("."))
    }
}

impl Version {
    /// The leading dotted number of `s`, if it has one.
    pub fn parse(s: &str) -> Option<Version> {
        let s = s.trim().trim_start_matches(['v', 'V']);
        let end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
        let parts: Vec<u64> = s[..end].split('.').filter(|p| !p.is_empty()).map_while(|p| p.parse().ok()).collect();
        (!parts.is_empty()).then_some(Version(parts))
    }

    /// The first version found anywhere in `text` (e.g. in a `User-Agent`).
    pub fn find_in(text: &str) -> Option<Version> {
        let start = text.find(|c: char| c.is_ascii_digit())?;
        Version::parse(&text[start..])
    }
}

impl PartialOrd for Version {
    /// See the [`Ord`] impl.
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    /// Part by part from the left, missing parts as 0.
    fn cmp(&self, other: &Self) -> Ordering {
        let n = self.0.len().max(other.0.len());
        (0..n)
            .map(|i| self.0.get(i).unwrap_or(&0).cmp(other.0.get(i).unwrap_or(&0)))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    }
}

/// A version range: comparators (`>=`, `>`, `<=`, `<`, `=`) joined by commas or spaces, all of which
/// must hold; `*` matches every version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRange {
    /// The range as written.
    text: String,
    /// Comparators: (which side of the bound, whether equal passes too, the bound); `=` is
    /// (`Equal`, `true`). Empty for `*`.
    parts: Vec<(Ordering, bool, Version)>,
}

impl VersionRange {
    /// Parses `>=150, <200`, `<120`, `=211.0.0` or `*`.
    pub fn parse(text: &str) -> Result<VersionRange, String> {
        let mut parts = Vec::new();
        for p in text.split([',', ' ']).map(str::trim).filter(|p| !p.is_empty() && *p != "*") {
            let (op, rest) = if let Some(r) = p.strip_prefix(">=") {
                ((Ordering::Greater, true), r)
            } else if let Some(r) = p.strip_prefix("<=") {
                ((Ordering::Less, true), r)
            } else if let Some(r) = p.strip_prefix('>') {
                ((Ordering::Greater, false), r)
            } else if let Some(r) = p.strip_prefix('<') {
                ((Ordering::Less, false), r)
            } else if let Some(r) = p.strip_prefix('=') {
                ((Ordering::Equal, true), r)
            } else {
                ((Ordering::Equal, true), p)
            };
            let v = Version::parse(rest)
                .filter(|_| rest.trim().chars().next().is_some_and(|c| c.is_ascii_digit()))
                .ok_or_else(|| format!("`{text}` is not a version range (e.g. \">=150, <200\", \"<120\", \"*\")"))?;
            parts.push((op.0, op.1, v));
        }
        Ok(VersionRange { text: text.to_string(), parts })
    }

    /// The range as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `v` is in the range.
    pub fn contains(&self, v: &Version) -> bool {
        self.parts.iter().all(|(dir, or_equal, bound)| {
            let o = v.cmp(bound);
            o == *dir && *dir != Ordering::Equal || (*or_equal && o == Ordering::Equal)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_whole_segments_and_name_the_id() {
        let t = PathTemplate::parse("/api/v2/widgets/{id}").unwrap();
        assert_eq!(t.matches("/api/v2/widgets/w-1"), Some(vec![("id", "w-1")]));
        assert_eq!(t.matches("/api/v2/widgets/w-1/"), Some(vec![("id", "w-1")]));
        assert_eq!(t.matches("/api/v2/widgets"), None);
        assert_eq!(t.matches("/api/v2/widgets//"), None);
        assert_eq!(t.matches("/api/v2/widgets/w-1/parts"), None);
        let t = PathTemplate::parse("/calls/{conversationId}/participants/{participantId}").unwrap();
        assert_eq!(t.id_of("/calls/c/participants/p"), Some("p"));
        assert!(PathTemplate::parse("widgets").is_err());
        assert!(PathTemplate::parse("/a/{x}/{x}").is_err());
        assert!(PathTemplate::parse("/a/pre{x}").is_err());
    }

    #[test]
    fn versions_compare_by_number_and_ranges_hold_all_their_parts() {
        let v = |s| Version::parse(s).unwrap();
        assert!(v("150.10.0") > v("150.9.9"));
        assert_eq!(v("211"), v("211.0.0"));
        assert_eq!(Version::find_in("PureCloud SDK/python 211.0.0-beta"), Some(v("211.0.0")));
        assert_eq!(Version::parse("python"), None);
        let r = VersionRange::parse(">=150, <200").unwrap();
        assert!(r.contains(&v("150")) && r.contains(&v("199.9")) && !r.contains(&v("200")) && !r.contains(&v("149.9")));
        assert!(VersionRange::parse("<=120").unwrap().contains(&v("120.0.0")));
        assert!(VersionRange::parse("=211.0.0").unwrap().contains(&v("211")));
        assert!(!VersionRange::parse("211.0.1").unwrap().contains(&v("211")));
        assert!(VersionRange::parse("*").unwrap().contains(&v("1")));
        assert!(VersionRange::parse(">= banana").is_err());
    }
}
