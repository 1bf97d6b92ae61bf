"""The characters of the pythonic call grammar, and a tolerant lexer that follows strings and brackets.

The reader in `rftfast.answer.calls` parses a whole answer; the streaming step scanner and the partial-answer
reader see answers that are still being written, so they only need to know, one character at a time, whether
it is inside a string literal and which brackets are open. That is `Lexer`, written once for both, and for the
JSON and Hermes walk (`rftfast.answer.walker`), which gives it JSON's only quote, ``"``.

>>> lexer = Lexer()
>>> [char for char in '[f(a="x, (y)", b=[1' if lexer.feed(char)]
['[', 'f', '(', 'a', '=', ',', ' ', 'b', '=', '[', '1']
>>> lexer.open, lexer.closing()
(['[', '(', '['], '])]')
"""

from __future__ import annotations

from collections.abc import Iterator

WHITESPACE = " \t\r\n"
QUOTES = "\"'"
BRACKETS = {"(": ")", "[": "]", "{": "}"}  # opener -> its closer
CLOSERS = frozenset(BRACKETS.values())
# A function name runs up to its "(" and may hold dots and plain spaces, but none of these.
NAME_STOP = frozenset("()[]{},=\"'\\\t\r\n")


class Lexer:
    """Where call text stands after the characters fed so far.

    `quote` is the quote character of the string literal being read ("" outside strings), `escaped` whether the
    last character was a backslash inside one, `open` the brackets opened outside strings and not yet closed
    (innermost last). A closing bracket pops the innermost open one whatever its kind, so a mismatch cannot
    wedge the lexer; `balanced` turns False at the first closer that matches no open bracket, for readers
    that must refuse such text.
    """

    def __init__(self, quotes: str = QUOTES) -> None:
        self.quotes = quotes  # JSON has one quote character: an apostrophe in JSON text is not a string's start
        self.quote = ""
        self.escaped = False
        self.open: list[str] = []
        self.balanced = True

    @property
    def at_top_level(self) -> bool:
        """Outside every string literal and every bracket opened since the lexer started."""
        return not self.quote and not self.open

    def feed(self, char: str) -> bool:
        """Advance over one character; True when it is syntax (outside string literals, and not a quote)."""
        if self.quote:
            if self.escaped:
                self.escaped = False
            elif char == "\\":
                self.escaped = True
            elif char == self.quote:
                self.quote = ""
            return False
        if char in self.quotes:
            self.quote = char
            return False
        if char in BRACKETS:
            self.open.append(char)
        elif char in CLOSERS:
            if not self.open or BRACKETS[self.open[-1]] != char:
                self.balanced = False
            if self.open:
                self.open.pop()
        return True

    def closing(self) -> str:
        """The characters that finish the open escape, string literal and brackets, innermost first."""
        return ("\\" if self.escaped else "") + self.quote + "".join(BRACKETS[b] for b in reversed(self.open))


def syntax(text: str) -> Iterator[tuple[int, str]]:
    """(index, character) of each character of `text` outside string literals, quotes excluded."""
    lexer = Lexer()
    for i, char in enumerate(text):
        if lexer.feed(char):
            yield i, char
