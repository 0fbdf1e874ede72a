#!/usr/bin/env python3
"""Reference fixtures for tests/test_tokenizer.c, from independent implementations.

  tests/fixtures/tokenizer_smollm2.jsonl
      {"text", "special", "ids"} encoded by llama.cpp (llama-cpp-python) with
      the SmolLM2 teacher GGUF; lines with a "pre" field were encoded with the
      same vocabulary but tokenizer.ggml.pre replaced by that name (a metadata
      only copy of the GGUF is written to a temporary directory for it).
  tests/fixtures/tiny_tokenizer/tokenizer.json + expected.jsonl
      a tiny byte-level BPE trained with the `tokenizers` library, and its
      encodings of some strings.

Run with the reference venv:  ~/xd-ref/bin/python tests/ref/make_tokenizer_fixture.py
Deterministic: fixed strings plus strings from a seeded generator.
"""
import json
import os
import random
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIX = os.path.join(ROOT, "tests", "fixtures")
GGUF = os.environ.get("XD_TEACHER",
                      os.path.expanduser("~/.cache/xdistill/models/SmolLM2-135M-Instruct.Q4_1.gguf"))

# ---- test strings -----------------------------------------------------------

PROSE = [
    "Hello world",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
    "Pack my box with five dozen liquor jugs.",
    "It was the best of times, it was the worst of times, it was the age of wisdom.",
    "To be, or not to be: that is the question.",
    "A distilled model learns from the teacher's soft targets.",
    "She sells sea shells by the sea shore.",
    "Knowledge distillation (Hinton et al., 2015) transfers dark knowledge.",
    "The mitochondria is the powerhouse of the cell.",
    "Call me Ishmael. Some years ago - never mind how long precisely - I went to sea.",
    "In a hole in the ground there lived a hobbit.",
    "Mr. and Mrs. Dursley, of number four, Privet Drive, were proud to say that they were perfectly normal.",
    "one two three four five six seven eight nine ten",
    "CamelCaseIdentifiersLikeThisOne and snake_case_ones_like_this",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "a",
    "I",
    "x y z",
    "e.g. i.e. etc. vs. Dr. St. Jr.",
    "Q: What is 2+2? A: 4.",
    "user: hi\nassistant: hello! how can I help?",
    "The year 1984 was a novel; 2001 was a space odyssey.",
    "tl;dr -- it works (mostly).",
    "Mixed CASE words: iPhone, eBay, McDonald's, O'Neil, MacBook.",
    "Hyphen-ated, en\u2013dash, em\u2014dash, minus\u2212sign.",
    "Ellipsis... and the unicode one\u2026 too",
    "Tabs\tbetween\twords",
    "Line one\nLine two\nLine three",
]

UNICODE = [
    "\u4f60\u597d\uff0c\u4e16\u754c\uff01",                      # Chinese
    "\u6211\u7231\u81ea\u7136\u8bed\u8a00\u5904\u7406\u3002",
    "\u3053\u3093\u306b\u3061\u306f\u4e16\u754c\u3002\u30ab\u30bf\u30ab\u30ca\u3082\u3002",  # Japanese
    "\ud55c\uad6d\uc5b4 \ubb38\uc7a5\uc785\ub2c8\ub2e4.",          # Korean
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9 fa\u00e7ade co\u00f6perate",
    "cafe\u0301 nai\u0308ve (decomposed)",
    "Stra\u00dfe \u00fcber \u00c4pfel \u00d6l \u00df\u1e9e",
    "Ti\u1ebfng Vi\u1ec7t c\u00f3 d\u1ea5u",
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! \u041a\u0430\u043a \u0434\u0435\u043b\u0430?",
    "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac: \u03b1\u03b2\u03b3 \u0394\u0395\u0396",
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",  # Arabic
    "\u0627\u0644\u0639\u064e\u0631\u064e\u0628\u0650\u064a\u064e\u0651\u0629 \u0645\u0639 \u062a\u0634\u0643\u064a\u0644",
    "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd",          # Hebrew
    "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e",  # Hindi
    "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e0a\u0e32\u0e27\u0e42\u0e25\u0e01",  # Thai
    "\u1200\u1208\u121d \u12a0\u121b\u122d\u129b",                # Ethiopic
    "Z\u0336\u0321a\u0337\u0327l\u0334\u0322g\u0335\u0328o\u0338\u0321 text",  # combining marks
    "a\u0300\u0301\u0302\u0303\u0304 e\u0308\u0308",
    "\u0300 leading combining mark",
    "\u00a1Hola! \u00bfQu\u00e9 tal?",
    "\u00bd \u00bc \u00be \u2153 fractions",
    "x\u00b2 + y\u00b3 = z\u2074",
    "\u2160 \u2161 \u2162 \u216b roman",
    "\u0661\u0662\u0663 \u06f4\u06f5\u06f6 arabic-indic digits",
    "\uff11\uff12\uff13 fullwidth \uff21\uff22\uff23",
    "\u0966\u0967\u0968 devanagari digits",
    "\u00a9 \u00ae \u2122 \u00a7 \u00b6 \u2020 \u2021",
    "\u20ac100 \u00a350 \u00a51000 $20 \u20b9500",
    "\u2190 \u2192 \u2191 \u2193 \u21d2 \u2200 \u2203 \u2208 \u2211 \u220f \u221a \u221e",
    "\u201cSmart quotes\u201d and \u2018single ones\u2019",
    "\u00abguillemets\u00bb \u2039single\u203a",
    "\u3001\u3002\u300c\u300d\u300e\u300f",
    "\ufeffBOM at start",
    "zero\u200bwidth\u200cjoiners\u200d",
    "private \ue000\uf8ff use",
    "unassigned \u0378 \U000e0001 \U0010ffff",
    "control \x01\x02\x1b[0m \x7f",
    "nul\x00byte",
    "\U0001d400\U0001d401 math bold \U0001d7d8",
    "\u2460\u2461\u2462 circled",
    "\u00ad soft hyphen",
    "\u0130stanbul \u0131\u015f\u0131k",
    "\u212a kelvin \u212b angstrom",
    "\u1f00\u1f01\u1f08 polytonic",
]

NUMBERS = ["0", "7", "42", "123", "1234", "12345", "123456", "1234567", "12345678",
           "3.14159", "-273.15", "1,000,000", "1e-10", "6.022e23", "0x1F", "0b1010",
           "+1 (555) 123-4567", "2024-01-15", "12:34:56", "v1.2.3", "10%", "$1.99",
           "1st 2nd 3rd 4th", "a1b2c3", "abc123def", "123abc", " 1", "  12", "a 1 2 3",
           "007", "1/2", "99.9%"]
NUMBERS += ["9" * n for n in (2, 3, 4, 5, 8, 13, 21, 34)]
NUMBERS += ["".join(str((i * 7 + 3) % 10) for i in range(n)) for n in (6, 10, 17, 25, 40)]

WHITESPACE = [" ", "  ", "   ", "\t", "\n", "\n\n", "\n\n\n", "\r\n", "\r\n\r\n", " \n ",
              "a  b", "a   b", "a    b", "  leading", "trailing  ", "  both  ", "\tindented",
              "a\t\tb", "a \t b", "a\n b", "a \nb", "a\n\n\nb", "a \n\n b", "  \n  \n  ",
              "x\u00a0y", "x\u00a0\u00a0y", "x\u3000y", "x\u2028y", "x\u2029y", "x\x85y",
              "x\x0by\x0cz", "x\u2003\u2003y", "x \u00a0 y", "end with newline\n",
              "\n\nstarts with newlines", " " * 16 + "deep", "word" + " " * 7, "\t" * 5,
              "a\r\nb\r\nc", "mix \t\n\r\x0b\x0c end", "a" + " " * 33 + "b"]

CONTRACTIONS = ["don't", "I'm", "you're", "we've", "she'll", "he'd", "it's", "can't",
                "DON'T", "I'M", "YOU'RE", "WE'VE", "SHE'LL", "HE'D", "IT'S", "It'S",
                "'s", "'S", "'t", "'re", "'ve", "'m", "'ll", "'d", "''", "'", "rock 'n' roll",
                "o'clock y'all ma'am", "'tis 'twas", "the dogs' bones", "James's",
                "'ll'll've", "it’s (curly)"]

EMOJI = ["\U0001f600", "\U0001f600\U0001f601\U0001f602", "I love \U0001f355!",
         "\U0001f44d\U0001f3fd thumbs", "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466 family",
         "\U0001f1fa\U0001f1f8 \U0001f1eb\U0001f1f7 \U0001f1ef\U0001f1f5 flags", "\u2764\ufe0f heart",
         "1\ufe0f\u20e3 keycap", "\U0001f3f3\ufe0f\u200d\U0001f308 rainbow flag",
         "\U0001f9d1\U0001f3fb\u200d\U0001f4bb coder", "\u2600\u2601\u2602 weather",
         "emoji\U0001f525in\U0001f525words", "\U0001f600 \U0001f600  \U0001f600"]

CODE = [
    "#include <stdio.h>\n\nint main(void) {\n    printf(\"hello\\n\");\n    return 0;\n}\n",
    "for (int i = 0; i < n; i++) { sum += a[i] * b[i]; }",
    "def f(x):\n    if x > 0:\n        return x * 2\n    else:\n        return -x\n",
    "class Foo(Bar):\n\tdef __init__(self):\n\t\tsuper().__init__()\n",
    "import numpy as np\nx = np.arange(10).reshape(2, 5)\nprint(x.T @ x)",
    "{\"key\": [1, 2, 3], \"nested\": {\"a\": null, \"b\": true}}",
    "<html><body><p class=\"x\">Hi &amp; bye</p></body></html>",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name;",
    "$ ls -la | grep '^d' && echo \"done\" > /dev/null 2>&1",
    "fn main() -> Result<(), Box<dyn Error>> { Ok(()) }",
    "const x = (a, b) => a ?? b; // nullish",
    "\\begin{equation} E = mc^2 \\end{equation}",
    "x+=1;y-=2;z*=3;w/=4;",
    "if(a==b&&c!=d||!e){return;}",
    "    four spaces\n        eight spaces\n            twelve\n",
    "# Heading\n\n- item 1\n- item 2\n\n```python\nprint(1)\n```\n",
    "s = r'^\\s+(?!\\S)|\\p{L}+$'",
]

PUNCT = ["!!!", "...", "?!?!", "---", "***", "<<>>", "((()))", "[[{{}}]]", ",,,;;;::",
         "@#$%^&*", "~`|\\/", "!!!hello???", "-_-", "=>", "<=>", "...\n...", "!? !? !?",
         "a,b.c;d:e", "'''", '"""', "\u2014\u2014", "\u2026\u2026", "\u3002\u3002\u3002"]

URLS = ["https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct",
        "http://example.com/path?query=1&b=two#frag",
        "user.name+tag@example.co.uk", "ftp://ftp.example.org/pub/file-1.2.3.tar.gz",
        "C:\\Users\\name\\Documents\\file.txt", "/usr/share/common-licenses/GPL-3",
        "www.example.com/%E2%9C%93"]

SPECIAL = ["<|im_start|>user\nhi<|im_end|>",
           "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>assistant\n",
           "<|endoftext|>", "text<|endoftext|>more", "<|im_end|><|im_end|>",
           "<|im_start|> spaced <|im_end|>", "almost <|im_start| special",
           "<repo_name>x<file_sep>y<filename>z", "<|endoftext|><|endoftext|>\n\n"]


# invalid UTF-8, stored as "hex" (llama.cpp reads each bad byte as U+FFFD;
# code points past U+10FFFF are left out: llama.cpp aborts on them)
INVALID_UTF8 = [b"\xff", b"abc\xe2\x82", b"\xc0\x80", b"\xed\xa0\x80", b"x\xed\xbf\xbfy",
                b"\x80\x80x", b"caf\xe9 ok", b"\xe2\x82 12\xff34", b"\xf0\x9f\x98 tail",
                b"<|im_start|>\xfe<|im_end|>"]


def long_strings():
    para = ("Distillation compresses a large teacher model into a smaller student. "
            "The student is trained to match the teacher's output distribution, "
            "often with a temperature that softens the probabilities. ")
    yield para * 14                                   # ~2300 chars of prose
    yield "a" * 2000                                  # one 2000-byte word
    yield "ab" * 1100
    yield "".join(str(i % 10) for i in range(2100))   # digits
    yield " " * 2000 + "x"
    yield "\n".join("    line %d: value = %d;" % (i, i * i) for i in range(90))
    yield ("\u4f60\u597d\u4e16\u754c" * 300)          # 1200 CJK chars, 3600 bytes
    yield ("\U0001f600" * 600)
    yield "word" * 600                                # 2400-byte word


PALETTE = (list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") * 3 +
           list("0123456789") * 2 + list(" " * 12) + list("\n\t.,;:!?'\"()[]{}-_+=*/\\<>@#$%^&|~`") +
           ["\u00e9", "\u00fc", "\u00df", "\u4e2d", "\u6587", "\u3042", "\u0416", "\u03a9", "\u0301",
            "\u0663", "\u00bd", "\U0001f600", "\u200d", "\u00a0", "\u3000", "\r", "'s", "'ll", "'T"])


def random_strings(rng, n):
    for _ in range(n):
        k = rng.randint(1, 60)
        yield "".join(rng.choice(PALETTE) for _ in range(k))


def smollm_strings():
    rng = random.Random(20240615)
    out = []
    for group in (PROSE, UNICODE, NUMBERS, WHITESPACE, CONTRACTIONS, EMOJI, CODE, PUNCT, URLS):
        out.extend(group)
    out.extend(long_strings())
    out.extend(random_strings(rng, 40))
    return out


# ---- llama.cpp references ---------------------------------------------------

def load_llama(path):
    import llama_cpp
    return llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)


def gguf_with_pre(src, dst, pre):
    """Metadata-only copy of src (no tensors) with tokenizer.ggml.pre = pre."""
    from gguf import GGUFReader, GGUFWriter, GGUFValueType
    r = GGUFReader(src)
    arch = r.fields["general.architecture"].contents()
    w = GGUFWriter(dst, arch=arch)
    for name, f in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        val = pre if name == "tokenizer.ggml.pre" else f.contents()
        if f.types[0] == GGUFValueType.ARRAY:
            w.add_key_value(name, val, f.types[0], sub_type=f.types[-1])
        else:
            w.add_key_value(name, val, f.types[0])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def encode(llm, text, special):
    return llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=True) + "\n")


def make_smollm2_fixture():
    if not os.path.exists(GGUF):
        sys.exit("teacher GGUF not found: %s (run `make test` once to install it)" % GGUF)
    rows = []
    llm = load_llama(GGUF)
    texts = smollm_strings()
    for t in texts:
        rows.append({"text": t, "special": False, "ids": encode(llm, t, False)})
    for b in INVALID_UTF8:
        ids = llm.tokenize(b, add_bos=False, special=False)
        rows.append({"hex": b.hex(), "special": False, "ids": ids})
    for t in SPECIAL:
        rows.append({"text": t, "special": True, "ids": encode(llm, t, True)})
        rows.append({"text": t, "special": False, "ids": encode(llm, t, False)})
    del llm

    # other pre-tokenizers, same vocabulary: every third short string, a few long ones
    subset = [t for t in texts if len(t) < 400][::3] + [t for t in texts if len(t) >= 400][:3]
    subset += ["don't DON'T It'S 'Ll", "a\n\n  b", "x  \n\n\t y", "12345 1234567 1", "!!!\n\n?",
               " ?!x", "\u0663\u0664\u0665\u0666\u0667", "  \r\n  \r\n", "\t\tfoo   \n  bar"]
    with tempfile.TemporaryDirectory() as tmp:
        for pre in ("llama-bpe", "dbrx", "qwen2", "gpt-2", "default"):
            path = os.path.join(tmp, pre + ".gguf")
            gguf_with_pre(GGUF, path, pre)
            llm = load_llama(path)
            for t in subset:
                rows.append({"text": t, "special": False, "pre": pre, "ids": encode(llm, t, False)})
            del llm
    write_jsonl(os.path.join(FIX, "tokenizer_smollm2.jsonl"), rows)
    return len(rows)


# ---- tiny HF tokenizer ------------------------------------------------------

def make_tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    d = os.path.join(FIX, "tiny_tokenizer")
    os.makedirs(d, exist_ok=True)
    corpus = PROSE + CODE + CONTRACTIONS + NUMBERS + [s for s in long_strings()][:1] + UNICODE[:10]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tok.train_from_iterator(corpus, trainer)
    tok.add_tokens(["<custom>"])  # a non-special added token (USER_DEFINED)
    tok.save(os.path.join(d, "tokenizer.json"), pretty=True)

    rng = random.Random(7)
    texts = (PROSE[:12] + CONTRACTIONS[:8] + NUMBERS[:8] + WHITESPACE[:8] + UNICODE[:5] +
             EMOJI[:3] + CODE[:3] + ["<|im_start|>user\nhi<|im_end|>", "a<custom>b <custom> c",
                                     "<|endoftext|>x"] + list(random_strings(rng, 6)))
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    rows = [{"text": t, "special": True, "ids": tok.encode(t, add_special_tokens=False).ids}
            for t in texts]
    write_jsonl(os.path.join(d, "expected.jsonl"), rows)
    return len(rows)


if __name__ == "__main__":
    n = make_smollm2_fixture()
    m = make_tiny_tokenizer()
    print("tokenizer_smollm2.jsonl: %d strings; tiny_tokenizer/expected.jsonl: %d strings" % (n, m))
