#!/usr/bin/env python3
"""gen_awkward_fixtures.py: writes tests/fixtures/tok/awkward/*.txt, the hard cases
for the GPT-2 tokenizer (each file is encoded on its own by the C tokenizer and by
tests/ref/gpt2_encode.js, and the ids must agree).

    python3 tests/ref/gen_awkward_fixtures.py

Files are raw bytes on purpose: several are invalid UTF-8 (lone surrogates,
overlong forms, truncated sequences, stray continuation bytes) and must reach the
tokenizer exactly as written here.
"""
import os

OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "tok", "awkward")

CASES = [
    ("accents", "Café naïve résumé Ångström Zoë façade, déjà vu — ÉCOLE œuvre\n".encode()),
    ("cjk", "日本語のテキスト、中文字符。한국어 텍스트です！\n漢字かなカナ".encode()),
    ("emoji", "I ❤️ 🍕! 👍🏽 thumbs up 🎉🎉🎉 done🙂".encode()),
    ("emoji-zwj", "family 👨‍👩‍👧‍👦 and 🏳️‍🌈 flag, 👩🏾‍💻 coder 🧑‍🤝‍🧑".encode()),
    ("keycaps-vs16", "☺️ ✌🏿 1️⃣ #️⃣ ©️ ⚠️".encode()),
    ("combining", "e\u0301 a\u0308b Z\u0351\u0352\u0353 n\u0303o\u0327 ḁ̷̢̛ x\u20dd".encode()),
    ("lone-surrogates", b"before \xed\xa0\x80 after \xed\xbf\xbf end \xed\xa0\x80\xed\xb0\x80x"),
    ("overlong", b"\xc0\xaf \xe0\x80\xaf \xf0\x80\x80\xaf \xc1\xbf x\xc0\x80y"),
    ("truncated", b"abc \xe2\x82 def \xf0\x9f\x98 ghi \xe2\x82\xe2\x82\xacjk \xe2"),
    ("stray-continuation", b"\x80\x81 text \xbf\xbf\xbf mid\x80dle \x80"),
    ("invalid-leads", b"\xf5\x80\x80\x80 \xfe \xff \xf8\x88\x80\x80\x80 \xf4\x90\x80\x80 ok"),
    ("nul", b"before\x00after \x00\x00 x\x00"),
    ("control", b"\x01\x02\x1b[31mred\x1b[0m \x7f\x08\x0b\x0c tail"),
    ("spaces", ("a" + " " * 50 + "b" + " " * 7 + "\n" + " " * 3).encode()),
    ("newlines", b"\n\n\nParagraph\n\n\n\n  Indented\r\n\r\nCRLF\n" + b"\n" * 20),
    ("tabs", b"\tcol1\t\tcol2\t \t col3\t\n\t\t\tx\t"),
    ("only-spaces", b"      "),
    ("empty", b""),
    ("single-char", b"x"),
    ("ending-space", b"word "),
    ("numbers", "123 4567890 3.14159 1,000,000 ½ ² ٣٤ 〇 Ⅻ 0x1F 1e-9 -42 ⑦ 12ab34".encode()),
    ("contractions",
     b"don't I'LL we're they've I'm you'd she'll it's DON'T 'tis ''s '''re rock'n'roll "
     b"O'Neill 's 'S x'd 'll've"),
    ("apostrophe-unicode", "don’t it’s ‘quoted’ ʼn".encode()),
    ("mixed-scripts",
     "Hello Мир مرحبا שלום नमस्ते γειά σου abc日本def ภาษาไทย ქართული Ελληνικά".encode()),
    ("astral", "𝕳𝖊𝖑𝖑𝖔 𝟙𝟚𝟛 𐍈 🀄 𠜎𠜱".encode()),
    ("unicode-spaces",
     "a\u00a0b\u2003c\u3000d\u2028e\u2029f\u0085g\u180eh\u200bi\u202fj\ufeffk \u00a0 \u3000\u3000z"
     .encode()),
    ("bom-start", b"\xef\xbb\xbfStarts with a BOM\n"),
    ("bom-middle", b"mid\xef\xbb\xbfdle \xef\xbb\xbf word\xef\xbb\xbf"),
    ("eot", b"one<|endoftext|>two <|endoftext|> three<|endoftext|><|endoftext|>\n<|endoftext|>"
            b" <|endoftext| <|endoftext|>"),
    ("invalid-around-eot", b"x\xe2\x82<|endoftext|>\x80y\xf0<|endoftext|>"),
    ("punct-runs", "!!! ??? ... --- *** ((())) \"quoted\" 'single' «guillemets» “smart” $%^&"
     .encode()),
    ("comma-quote-aliases",
     b'["a","b"] {"k":"v"},"x" ",", "],"[" ")," "\'," .,". ","],[1],[2] \',\' ."," \'","'),
    ("space-before-punct", b"a ,b . c ' s  ! x \t, y"),
    ("code", b"https://example.com/path?q=1&x=y#frag\nint main(void) { return 0; }\n"
             b"    if (x) {\n\t\ty = x->z[3];\n\t}\n"),
    ("valid-extremes", b"\xf0\x90\x80\x80 \xf4\x8f\xbf\xbf \xef\xbf\xbe \xef\xbf\xbf \xc2\x80"
                       b" \xdf\xbf \xe0\xa0\x80 \xed\x9f\xbf \xee\x80\x80"),
    ("long-word", b"a" * 3000 + b" " + b"ab" * 1000 + b" " + b"xyzzy" * 200),
    ("long-base64",
     b"TWFueSBoYW5kcyBtYWtlIGxpZ2h0IHdvcmsuQmFzZTY0IGlzIGEgZ3JvdXAgb2YgYmluYXJ5LXRvLXRleHQg"
     b"ZW5jb2Rpbmcgc2NoZW1lcyB0aGF0IHJlcHJlc2VudCBiaW5hcnkgZGF0YQ==" * 8),
]


def main():
    os.makedirs(OUT, exist_ok=True)
    for old in os.listdir(OUT):
        if old.endswith(".txt"):
            os.remove(os.path.join(OUT, old))
    for i, (name, data) in enumerate(CASES, 1):
        with open(os.path.join(OUT, "%02d-%s.txt" % (i, name)), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
