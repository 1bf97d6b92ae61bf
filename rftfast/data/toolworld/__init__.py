"""The built-in tool world: a deterministic generator of tool-use tasks a small model can learn on a CPU.

Fourteen everyday tools (`TOOLS`, JSON Schema), an executor that validates and runs calls
(`execute`), and `generate(n, seed, levels)`, which writes natural-language requests at six
difficulty levels, stored in `Record.meta["level"]`:

1. one call with required arguments only;
2. the query also asks for optional arguments;
3. the right tool must be picked among look-alike distractors (three to five tools offered);
4. two or three independent calls in one answer;
5. values that must be worked out: dates relative to the system prompt's today, spoken times,
   durations and counts, values from earlier turns or earlier tool results;
6. no call: chit-chat, or a request none of the offered tools can serve (the answer is text).

`split(records)` holds out a share of the records so that no user query appears on both sides.

Modules: `tools` (schemas, the one list of tools), `executor` (validate, execute), `vocab`
(entities and wording), `phrasings` (how each call is asked), `tasks` (levels 1-4), `reasoning`
(level 5), `nocall` (level 6), `generate` (records, split).
"""

from rftfast.data.toolworld.executor import execute, validate
from rftfast.data.toolworld.generate import LEVEL_NAMES, LEVELS, generate, split, user_query
from rftfast.data.toolworld.tools import TOOLS, TOOLS_BY_NAME

__all__ = ["LEVELS", "LEVEL_NAMES", "TOOLS", "TOOLS_BY_NAME", "execute", "generate", "split", "user_query", "validate"]
