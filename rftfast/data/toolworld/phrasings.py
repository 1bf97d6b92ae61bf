"""How users ask for calls: the phrasing tables that the intents and parallel tasks in `tasks` draw from.

A phrasing's slots are named after the arguments of the call it asks for ({city}, {from_unit}),
so `tasks.ask` fills them from the call itself. A slot that is no argument ({extras}, {Unit}),
or whose value reads differently in a sentence ({date} spoken rather than ISO), is filled from
the words the intent passes as `spoken`. A tool's second table (WEATHER_IN_UNIT after WEATHER)
also asks for an optional argument, for level 2.

Order matters: a seeded generator draws a phrasing by its index, so reordering a table or adding
to it changes the records a seed produces.
"""

WEATHER = (
    "What's the weather in {city}?",
    "How's the weather in {city} right now?",
    "Tell me the current weather for {city}.",
    "Check the weather in {city} for me.",
    "What's it like outside in {city} at the moment?",
    "Is it cold in {city} today?",
    "Can you look up the weather in {city}?",
)
WEATHER_IN_UNIT = (
    "What's the weather in {city} in {unit}?",
    "How warm is it in {city}? Give me the temperature in {unit}.",
    "Check the weather in {city} and show the temperature in degrees {Unit}.",
    "I'd like the current weather for {city}, in {unit} please.",
    "What's the temperature in {city} right now, in {Unit}?",
)

UNIT_CONVERSION = (
    "Convert {value} {from_unit} to {to_unit}.",
    "How many {to_unit} is {value} {from_unit}?",
    "What is {value} {from_unit} in {to_unit}?",
    "I need {value} {from_unit} expressed in {to_unit}.",
    "Change {value} {from_unit} into {to_unit}, please.",
    "Please turn {value} {from_unit} into {to_unit}.",
)

EVENT = (
    "Create an event called '{title}' on {date}{extras}.",
    "Add '{title}' to my calendar on {date}{extras}.",
    "Put {title} in my calendar for {date}{extras}.",
    "Schedule '{title}' for {date}{extras}.",
    "Make a calendar entry '{title}' on {date}{extras}.",
)

LIST_EVENTS = (
    "What's on my calendar on {date}?",
    "List my events for {date}.",
    "Do I have anything scheduled on {date}?",
    "Show me my schedule for {date}.",
    "What meetings do I have on {date}?",
    "Am I busy on {date}?",
)

CURRENCY = (
    "Convert {amount} {from_currency} to {to_currency}.",
    "How much is {amount} {from_currency} in {to_currency}?",
    "What's {amount} {from_currency} worth in {to_currency}?",
    "Exchange {amount} {from_currency} into {to_currency}.",
    "I have {amount} {from_currency}. How much is that in {to_currency}?",
)

SEARCH = (
    "Search the web for {query}.",
    "Look up {query} online.",
    "Find information about {query}.",
    "Can you search for {query}?",
    "Do a web search on {query}.",
    "Google {query} for me.",
)
SEARCH_TOP_N = (
    "Search the web for {query} and show me the top {max_results} results.",
    "Find {max_results} results about {query}.",
    "Look up {query} online, just {max_results} results please.",
    "Give me the top {max_results} search results for {query}.",
)

EMAIL = (
    "Send an email to {to} with the subject '{subject}'.",
    "Email {to} with the subject line '{subject}'.",
    "Write to {to}, subject: '{subject}'.",
    "Shoot an email over to {to} titled '{subject}'.",
)
EMAIL_WITH_BODY = (
    "Send an email to {to} with the subject '{subject}' and the message '{body}'",
    "Email {to}, subject '{subject}', saying: '{body}'",
    "Write to {to} with the subject '{subject}'. The body should read: '{body}'",
)

REMINDER = (
    "Remind me to {text} on {date} at {time}.",
    "Set a reminder to {text} for {date} at {time}.",
    "On {date} at {time}, remind me to {text}.",
    "Create a reminder for {date} at {time}: {text}.",
)

STOCK = (
    "How much is {symbol} trading at?",
    "Get me the current price of {symbol}.",
    "Check the share price of {symbol}.",
    "What's {symbol} at on the stock market today?",
)
STOCK_BY_COMPANY = (  # added where the company's name is not its symbol
    "What's the stock price of {company} ({symbol})?",
    "What are {company} shares ({symbol}) worth right now?",
)

TRANSLATE = (
    "Translate '{text}' into {target_language}.",
    "How do you say '{text}' in {target_language}?",
    "Can you translate '{text}' to {target_language}?",
    "What's '{text}' in {target_language}?",
)
TRANSLATE_FROM_ENGLISH = (
    "Translate '{text}' from English into {target_language}.",
    "Translate this English sentence into {target_language}: '{text}'",
    "How would I say the English phrase '{text}' in {target_language}?",
)

CALCULATE = (
    "Calculate {expression}.",
    "What is {expression}?",
    "Compute {expression} for me.",
    "Work out {expression}.",
    "Can you evaluate {expression}?",
)

RESTAURANT = (
    "Book a table for {party_size} at {name} on {date} at {time}.",
    "Reserve {name} for {party_size} people on {date} at {time}.",
    "I need a table at {name} for {party_size} on {date}, {time}.",
    "Make a reservation at {name}: party of {party_size}, {date}, {time}.",
)

FLIGHT = (
    "Find flights from {origin} to {destination} on {date}{extras}.",
    "Search for flights from {origin} to {destination} on {date}{extras}.",
    "Are there any flights from {origin} to {destination} on {date}{extras}?",
    "Look up flights {origin} to {destination} for {date}{extras}.",
)

DIRECTIONS = (
    "How do I get from {origin} to {destination}?",
    "Give me directions from {origin} to {destination}.",
    "What's the route from {origin} to {destination}?",
    "Show me how to get to {destination} from {origin}.",
)
DIRECTIONS_BY_MODE = (
    "How do I get from {origin} to {destination} {by}?",
    "Give me {adjective} directions from {origin} to {destination}.",
    "What's the best way from {origin} to {destination} {by}?",
)
MODE_WORDS = {  # travel mode -> ({by}, {adjective})
    "driving": ("by car", "driving"),
    "walking": ("on foot", "walking"),
    "transit": ("by public transport", "transit"),
    "cycling": ("by bike", "cycling"),
}

# One tool asked about several entities in one message, keyed by the tool: {listed} names them all
# ('Paris, Tokyo and Lima'); the other slots are named after the argument the calls share.
SAME_TOOL = {
    "get_weather": (
        "What's the weather in {listed}?",
        "Compare the weather in {listed}.",
        "How's the weather right now in {listed}?",
    ),
    "get_stock_price": (
        "Get the stock prices of {listed}.",
        "How are {listed} trading today?",
        "Check the share prices for {listed}.",
    ),
    "convert_currency": (
        "Convert {amount} {from_currency} to {listed}.",
        "How much is {amount} {from_currency} in {listed}?",
    ),
    "translate_text": ("Translate '{text}' into {listed}.", "How do you say '{text}' in {listed}?"),
    "list_events": ("What's on my calendar on {listed}?", "List my events for {listed}.", "Am I free on {listed}?"),
}
