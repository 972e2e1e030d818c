//! The Porter stemmer exactly as NLTK's `PorterStemmer()` runs it by default
//! (`mode=NLTK_EXTENSIONS`, NLTK 3.x), which is the stemmer `rouge-score` uses with
//! `use_stemmer=True`.
//!
//! Porter, M. "An algorithm for suffix stripping." Program 14.3 (1980): 130-137, plus the
//! deviations NLTK applies in its default mode: a table of irregular forms (`dying` → `die`,
//! `skies` → `sky`, …), words of one or two letters left alone, `ies`/`ied` → `ie` for
//! four-letter words, `y` → `i` only after a consonant that is not the whole stem, `alli` →
//! `al` tried first and re-stemmed, `bli` → `ble` (not `abli`), `fulli` → `ful`, `logi` → `log`
//! with the `l` counted in the stem, and `*o` also true for a two-letter vowel-consonant stem.
//! `tests/porter.rs` checks thousands of words against NLTK.

/// Stem `word` (lowercased first, as NLTK's `stem(word, to_lowercase=True)`).
pub fn stem(word: &str) -> String {
    let lower = word.to_lowercase();
    if let Some(irregular) = irregular_form(&lower) {
        return irregular.to_string();
    }
    // NLTK compares the length of the word as given, before lowercasing.
    if word.chars().count() <= 2 {
        return lower;
    }
    let mut w: Vec<char> = lower.chars().collect();
    step1a(&mut w);
    step1b(&mut w);
    step1c(&mut w);
    step2(&mut w);
    step3(&mut w);
    step4(&mut w);
    step5a(&mut w);
    step5b(&mut w);
    w.into_iter().collect()
}

/// NLTK's table of irregular forms ("errors drawn to Martin Porter's attention").
fn irregular_form(word: &str) -> Option<&'static str> {
    Some(match word {
        "sky" | "skies" => "sky",
        "dying" => "die",
        "lying" => "lie",
        "tying" => "tie",
        "news" => "news",
        "innings" | "inning" => "inning",
        "outings" | "outing" => "outing",
        "cannings" | "canning" => "canning",
        "howe" => "howe",
        "proceed" => "proceed",
        "exceed" => "exceed",
        "succeed" => "succeed",
        _ => return None,
    })
}

fn is_vowel(c: char) -> bool {
    matches!(c, 'a' | 'e' | 'i' | 'o' | 'u')
}

/// Consonant flags for every position: a `y` is a consonant at the start or after a vowel.
fn consonant_flags(w: &[char]) -> Vec<bool> {
    let mut flags: Vec<bool> = Vec::with_capacity(w.len());
    for (i, &c) in w.iter().enumerate() {
        let cons = if is_vowel(c) {
            false
        } else if c == 'y' {
            i == 0 || !flags[i - 1]
        } else {
            true
        };
        flags.push(cons);
    }
    flags
}

fn is_consonant(w: &[char], i: usize) -> bool {
    consonant_flags(&w[..=i])[i]
}

/// Porter's m: the number of vowel-consonant transitions.
fn measure(stem: &[char]) -> usize {
    consonant_flags(stem)
        .windows(2)
        .filter(|p| !p[0] && p[1])
        .count()
}

fn contains_vowel(stem: &[char]) -> bool {
    consonant_flags(stem).iter().any(|&c| !c)
}

/// `*d`: ends with a double consonant.
fn ends_double_consonant(w: &[char]) -> bool {
    let n = w.len();
    n >= 2 && w[n - 1] == w[n - 2] && is_consonant(w, n - 1)
}

/// `*o`: ends consonant-vowel-consonant with the last not w, x or y (NLTK: or the stem is
/// exactly vowel-consonant).
fn ends_cvc(w: &[char]) -> bool {
    let n = w.len();
    if n >= 3 {
        let f = consonant_flags(w);
        if f[n - 3] && !f[n - 2] && f[n - 1] && !matches!(w[n - 1], 'w' | 'x' | 'y') {
            return true;
        }
    }
    n == 2 && {
        let f = consonant_flags(w);
        !f[0] && f[1]
    }
}

fn ends_with(w: &[char], suffix: &str) -> bool {
    let n = suffix.len();
    w.len() >= n && w[w.len() - n..].iter().copied().eq(suffix.chars())
}

fn replace_suffix(w: &mut Vec<char>, suffix_len: usize, replacement: &str) {
    w.truncate(w.len() - suffix_len);
    w.extend(replacement.chars());
}

/// When a rule whose suffix matches may fire.
#[derive(Clone, Copy)]
enum Cond {
    Always,
    /// m(stem) > 0.
    M0,
    /// m(stem) > 1.
    M1,
    /// m(stem) > 1 and the stem ends in s or t (`ion`).
    Ion,
    /// NLTK's `logi`: m(word minus "ogi") > 0.
    Logi,
}

/// Apply the first rule whose suffix matches; if its condition fails, stop (NLTK's
/// `_apply_rule_list`). Returns whether a suffix matched.
fn apply_rules(w: &mut Vec<char>, rules: &[(&str, &str, Cond)]) -> bool {
    for &(suffix, replacement, cond) in rules {
        if !ends_with(w, suffix) {
            continue;
        }
        let stem = &w[..w.len() - suffix.len()];
        let ok = match cond {
            Cond::Always => true,
            Cond::M0 => measure(stem) > 0,
            Cond::M1 => measure(stem) > 1,
            Cond::Ion => measure(stem) > 1 && matches!(stem.last(), Some('s' | 't')),
            Cond::Logi => measure(&w[..w.len() - 3]) > 0,
        };
        if ok {
            replace_suffix(w, suffix.len(), replacement);
        }
        return true;
    }
    false
}

fn step1a(w: &mut Vec<char>) {
    if w.len() == 4 && ends_with(w, "ies") {
        replace_suffix(w, 3, "ie");
        return;
    }
    use Cond::Always;
    apply_rules(
        w,
        &[
            ("sses", "ss", Always),
            ("ies", "i", Always),
            ("ss", "ss", Always),
            ("s", "", Always),
        ],
    );
}

fn step1b(w: &mut Vec<char>) {
    if ends_with(w, "ied") {
        let repl = if w.len() == 4 { "ie" } else { "i" };
        replace_suffix(w, 3, repl);
        return;
    }
    if ends_with(w, "eed") {
        if measure(&w[..w.len() - 3]) > 0 {
            replace_suffix(w, 3, "ee");
        }
        return;
    }
    let mut stripped = false;
    for suffix in ["ed", "ing"] {
        if ends_with(w, suffix) && contains_vowel(&w[..w.len() - suffix.len()]) {
            w.truncate(w.len() - suffix.len());
            stripped = true;
            break;
        }
    }
    if !stripped {
        return;
    }
    use Cond::Always;
    if apply_rules(
        w,
        &[
            ("at", "ate", Always),
            ("bl", "ble", Always),
            ("iz", "ize", Always),
        ],
    ) {
        return;
    }
    if ends_double_consonant(w) {
        if !matches!(w.last(), Some('l' | 's' | 'z')) {
            w.pop();
        }
        return;
    }
    if measure(w) == 1 && ends_cvc(w) {
        w.push('e');
    }
}

fn step1c(w: &mut [char]) {
    if ends_with(w, "y") {
        let n = w.len() - 1;
        if n > 1 && is_consonant(&w[..n], n - 1) {
            w[n] = 'i';
        }
    }
}

fn step2(w: &mut Vec<char>) {
    if ends_with(w, "alli") && measure(&w[..w.len() - 4]) > 0 {
        replace_suffix(w, 4, "al");
        return step2(w);
    }
    use Cond::{Logi, M0};
    apply_rules(
        w,
        &[
            ("ational", "ate", M0),
            ("tional", "tion", M0),
            ("enci", "ence", M0),
            ("anci", "ance", M0),
            ("izer", "ize", M0),
            ("bli", "ble", M0),
            ("alli", "al", M0),
            ("entli", "ent", M0),
            ("eli", "e", M0),
            ("ousli", "ous", M0),
            ("ization", "ize", M0),
            ("ation", "ate", M0),
            ("ator", "ate", M0),
            ("alism", "al", M0),
            ("iveness", "ive", M0),
            ("fulness", "ful", M0),
            ("ousness", "ous", M0),
            ("aliti", "al", M0),
            ("iviti", "ive", M0),
            ("biliti", "ble", M0),
            ("fulli", "ful", M0),
            ("logi", "log", Logi),
        ],
    );
}

fn step3(w: &mut Vec<char>) {
    use Cond::M0;
    apply_rules(
        w,
        &[
            ("icate", "ic", M0),
            ("ative", "", M0),
            ("alize", "al", M0),
            ("iciti", "ic", M0),
            ("ical", "ic", M0),
            ("ful", "", M0),
            ("ness", "", M0),
        ],
    );
}

fn step4(w: &mut Vec<char>) {
    use Cond::{Ion, M1};
    apply_rules(
        w,
        &[
            ("al", "", M1),
            ("ance", "", M1),
            ("ence", "", M1),
            ("er", "", M1),
            ("ic", "", M1),
            ("able", "", M1),
            ("ible", "", M1),
            ("ant", "", M1),
            ("ement", "", M1),
            ("ment", "", M1),
            ("ent", "", M1),
            ("ion", "", Ion),
            ("ou", "", M1),
            ("ism", "", M1),
            ("ate", "", M1),
            ("iti", "", M1),
            ("ous", "", M1),
            ("ive", "", M1),
            ("ize", "", M1),
        ],
    );
}

fn step5a(w: &mut Vec<char>) {
    if ends_with(w, "e") {
        let stem = &w[..w.len() - 1];
        let m = measure(stem);
        if m > 1 || (m == 1 && !ends_cvc(stem)) {
            w.pop();
        }
    }
}

fn step5b(w: &mut Vec<char>) {
    if ends_with(w, "ll") && measure(&w[..w.len() - 1]) > 1 {
        w.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::stem;

    #[test]
    fn paper_examples() {
        for (word, expected) in [
            ("caresses", "caress"),
            ("ponies", "poni"),
            ("ties", "tie"),
            ("cats", "cat"),
            ("agreed", "agre"),
            ("plastered", "plaster"),
            ("motoring", "motor"),
            ("hopping", "hop"),
            ("falling", "fall"),
            ("filing", "file"),
            ("happy", "happi"),
            ("enjoy", "enjoy"),
            ("relational", "relat"),
            ("generalization", "gener"),
            ("dying", "die"),
            ("controlling", "control"),
            ("geology", "geolog"),
            ("running", "run"),
            ("yyyy", "yyyi"),
            ("is", "is"),
        ] {
            assert_eq!(stem(word), expected, "{word}");
        }
    }
}
