//! JSON per RFC 8259, read into a tree that keeps every object entry in order, duplicates
//! included. Strings must be Unicode: an unpaired surrogate escape (`"\ud800"`) makes the text
//! invalid, as I-JSON (RFC 7493) has it; the README's `not_json` is "not valid UTF-8 JSON".

#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    /// Any number: nothing the README describes reads a number's value.
    Number,
    String(String),
    Array(Vec<Json>),
    /// Every entry in order, duplicates included.
    Object(Vec<(String, Json)>),
}

impl Json {
    fn entries(&self) -> &[(String, Json)] {
        match self {
            Json::Object(entries) => entries,
            _ => &[],
        }
    }

    /// The first value of `key`, if this is an object that has it.
    pub fn get(&self, key: &str) -> Option<&Json> {
        self.entries()
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value)
    }

    /// Whether `key` appears more than once in this object.
    pub fn repeats(&self, key: &str) -> bool {
        self.entries()
            .iter()
            .filter(|(name, _)| name == key)
            .nth(1)
            .is_some()
    }
}

/// Why a text is not a [`Json`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    Invalid,
    /// Nested deeper than [`MAX_DEPTH`]: the oracle gives no opinion.
    TooDeep,
}

/// The parser is recursive; deeper values are not judged (the fuzz inputs are a few KB).
pub const MAX_DEPTH: usize = 512;

pub fn parse(bytes: &[u8]) -> Result<Json, Error> {
    let text = std::str::from_utf8(bytes).map_err(|_| Error::Invalid)?;
    let mut parser = Parser { text, at: 0 };
    let value = parser.value(0)?;
    parser.whitespace();
    if parser.at == text.len() {
        Ok(value)
    } else {
        Err(Error::Invalid)
    }
}

struct Parser<'t> {
    text: &'t str,
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn next(&mut self) -> Result<u8, Error> {
        let byte = self.peek().ok_or(Error::Invalid)?;
        self.at += 1;
        Ok(byte)
    }

    fn eat(&mut self, byte: u8) -> Result<(), Error> {
        if self.next()? == byte {
            Ok(())
        } else {
            Err(Error::Invalid)
        }
    }

    fn whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, Error> {
        if depth > MAX_DEPTH {
            return Err(Error::TooDeep);
        }
        self.whitespace();
        match self.peek().ok_or(Error::Invalid)? {
            b'{' => self.object(depth),
            b'[' => self.array(depth),
            b'"' => self.string().map(Json::String),
            b't' => self.literal("true", Json::Bool(true)),
            b'f' => self.literal("false", Json::Bool(false)),
            b'n' => self.literal("null", Json::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(Error::Invalid),
        }
    }

    fn literal(&mut self, word: &str, value: Json) -> Result<Json, Error> {
        if self.text[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(value)
        } else {
            Err(Error::Invalid)
        }
    }

    fn object(&mut self, depth: usize) -> Result<Json, Error> {
        self.eat(b'{')?;
        let mut entries = Vec::new();
        self.whitespace();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(Json::Object(entries));
        }
        loop {
            self.whitespace();
            let key = self.string()?;
            self.whitespace();
            self.eat(b':')?;
            let value = self.value(depth + 1)?;
            entries.push((key, value));
            self.whitespace();
            match self.next()? {
                b',' => continue,
                b'}' => return Ok(Json::Object(entries)),
                _ => return Err(Error::Invalid),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Json, Error> {
        self.eat(b'[')?;
        let mut items = Vec::new();
        self.whitespace();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(Json::Array(items));
        }
        loop {
            items.push(self.value(depth + 1)?);
            self.whitespace();
            match self.next()? {
                b',' => continue,
                b']' => return Ok(Json::Array(items)),
                _ => return Err(Error::Invalid),
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        self.at - start
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`, of any magnitude.
    fn number(&mut self) -> Result<Json, Error> {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return Err(Error::Invalid),
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            if self.digits() == 0 {
                return Err(Error::Invalid);
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if self.digits() == 0 {
                return Err(Error::Invalid);
            }
        }
        Ok(Json::Number)
    }

    fn string(&mut self) -> Result<String, Error> {
        self.eat(b'"')?;
        let mut out = String::new();
        loop {
            match self.peek().ok_or(Error::Invalid)? {
                b'"' => {
                    self.at += 1;
                    return Ok(out);
                }
                b'\\' => {
                    self.at += 1;
                    out.push(self.escape()?);
                }
                0x00..=0x1f => return Err(Error::Invalid),
                _ => {
                    let c = self.text[self.at..].chars().next().ok_or(Error::Invalid)?;
                    self.at += c.len_utf8();
                    out.push(c);
                }
            }
        }
    }

    fn escape(&mut self) -> Result<char, Error> {
        Ok(match self.next()? {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let unit = self.hex4()?;
                match unit {
                    0xD800..=0xDBFF => {
                        self.eat(b'\\')?;
                        self.eat(b'u')?;
                        let low = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return Err(Error::Invalid);
                        }
                        let code = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                        char::from_u32(code).ok_or(Error::Invalid)?
                    }
                    0xDC00..=0xDFFF => return Err(Error::Invalid),
                    _ => char::from_u32(unit).ok_or(Error::Invalid)?,
                }
            }
            _ => return Err(Error::Invalid),
        })
    }

    fn hex4(&mut self) -> Result<u32, Error> {
        let mut unit = 0;
        for _ in 0..4 {
            let digit = char::from(self.next()?)
                .to_digit(16)
                .ok_or(Error::Invalid)?;
            unit = unit * 16 + digit;
        }
        Ok(unit)
    }
}
