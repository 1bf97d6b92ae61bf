"""The entities tool-world queries are made of, and how dates, times and numbers are written.

Every value here appears verbatim in some ground-truth call, so each is already in the
canonical form the executor accepts (city names as written, ISO currency codes, enum units).
"""

from __future__ import annotations

import random
from datetime import date, timedelta

CITIES = (
    "Paris",
    "Tokyo",
    "New York",
    "London",
    "Berlin",
    "Madrid",
    "Rome",
    "Lisbon",
    "Amsterdam",
    "Vienna",
    "Prague",
    "Stockholm",
    "Oslo",
    "Helsinki",
    "Dublin",
    "Chicago",
    "Toronto",
    "Vancouver",
    "Sydney",
    "Melbourne",
    "Auckland",
    "Singapore",
    "Seoul",
    "Bangkok",
    "Mumbai",
    "Delhi",
    "Cairo",
    "Nairobi",
    "Cape Town",
    "Buenos Aires",
    "Lima",
    "Mexico City",
    "San Francisco",
    "Seattle",
    "Boston",
    "Miami",
    "Denver",
    "Austin",
    "Istanbul",
    "Athens",
    "Zurich",
    "Copenhagen",
    "Warsaw",
    "Budapest",
    "Kyoto",
    "Osaka",
)

CURRENCY_NAMES = {
    "USD": "US dollars",
    "EUR": "euros",
    "GBP": "British pounds",
    "JPY": "Japanese yen",
    "CHF": "Swiss francs",
    "CAD": "Canadian dollars",
    "AUD": "Australian dollars",
    "CNY": "Chinese yuan",
    "INR": "Indian rupees",
    "MXN": "Mexican pesos",
    "SEK": "Swedish kronor",
    "BRL": "Brazilian reais",
}

COMPANIES = {
    "AAPL": "Apple",
    "MSFT": "Microsoft",
    "GOOGL": "Alphabet",
    "AMZN": "Amazon",
    "NVDA": "Nvidia",
    "TSLA": "Tesla",
    "META": "Meta",
    "NFLX": "Netflix",
    "IBM": "IBM",
    "INTC": "Intel",
    "AMD": "AMD",
    "ORCL": "Oracle",
    "KO": "Coca-Cola",
    "DIS": "Disney",
    "NKE": "Nike",
    "V": "Visa",
}

PEOPLE = (
    "Maria",
    "James",
    "Aisha",
    "Chen",
    "Olivia",
    "Lucas",
    "Priya",
    "Noah",
    "Sofia",
    "Mateo",
    "Emma",
    "Kenji",
    "Fatima",
    "Liam",
    "Anna",
    "David",
    "Zoe",
    "Omar",
    "Hannah",
    "Ivan",
)
MAIL_DOMAINS = ("example.com", "mail.com", "work.org", "company.io")

EVENT_TITLES = (
    "Team standup",
    "Dentist appointment",
    "Project kickoff",
    "Lunch with Sam",
    "Budget review",
    "Yoga class",
    "Parent-teacher meeting",
    "Quarterly planning",
    "Coffee with Dana",
    "Piano lesson",
    "Design review",
    "Book club",
    "Car service",
    "Haircut",
    "Sprint retrospective",
    "Birthday dinner",
    "Job interview",
    "Client call",
    "Marketing sync",
    "Guitar practice",
)

REMINDER_TEXTS = (
    "call the plumber",
    "pay the electricity bill",
    "water the plants",
    "pick up the dry cleaning",
    "take my medication",
    "renew my passport",
    "buy milk",
    "send the invoice",
    "book a flight home",
    "walk the dog",
    "submit the expense report",
    "call mom",
    "charge the car",
    "return library books",
    "feed the cat",
    "back up my laptop",
)

SEARCH_TOPICS = (
    "best hiking trails in Colorado",
    "history of the printing press",
    "how to make sourdough bread",
    "electric cars with the longest range",
    "symptoms of vitamin D deficiency",
    "tips for learning Japanese",
    "the rules of cricket",
    "cheap flights to Iceland",
    "how solar panels work",
    "best budget laptops",
    "the tallest buildings in the world",
    "how to repot an orchid",
    "Python asyncio tutorial",
    "the causes of the French Revolution",
    "healthy breakfast ideas",
    "how to train a puppy",
    "the James Webb telescope discoveries",
    "the best museums in Europe",
    "how to fix a leaking tap",
    "marathon training plans",
)

EMAIL_SUBJECTS = (
    "Quarterly report",
    "Meeting notes",
    "Dinner on Friday",
    "Invoice 1042",
    "Project update",
    "Vacation plans",
    "Contract draft",
    "Welcome aboard",
    "Feedback on the proposal",
    "Weekend trip",
    "Happy birthday",
    "Rent payment",
    "Conference schedule",
    "Lunch tomorrow",
)
EMAIL_BODIES = (
    "Please find the details attached.",
    "Can we move it to next week?",
    "Thanks for your help!",
    "Let me know what you think.",
    "See you there.",
    "I will call you later today.",
    "The numbers look good this quarter.",
    "Running ten minutes late, sorry.",
)

PHRASES = (
    "Good morning",
    "Where is the train station?",
    "Thank you very much",
    "How much does this cost?",
    "I would like a coffee, please",
    "Nice to meet you",
    "Where is the nearest pharmacy?",
    "See you tomorrow",
    "The meeting starts at noon",
    "Can you help me?",
    "I am allergic to peanuts",
    "Happy birthday",
    "The bill, please",
    "What time is it?",
    "I love this city",
)

EXPRESSIONS = (
    "17 * 23",
    "(45 + 15) / 4",
    "2 ** 10",
    "1250 * 0.15",
    "987 - 654",
    "144 / 12",
    "3.5 * 8",
    "(12 + 8) * (7 - 2)",
    "1000 / 7",
    "99 % 7",
    "15 ** 2",
    "4096 / 64",
    "(250 - 75) * 3",
    "0.2 * 3600",
    "365 * 24",
    "7 * 7 * 7",
    "1024 - 768",
    "(9 + 6) / 5",
)

RESTAURANTS = (
    "Bella Napoli",
    "The Golden Fork",
    "Sakura Sushi",
    "Le Petit Bistro",
    "Casa Lupita",
    "Spice Route",
    "The Green Table",
    "Olive & Thyme",
    "Dragon Palace",
    "Harbor Grill",
    "Blue Lagoon",
    "El Toro",
    "Trattoria Roma",
    "The Hungry Fox",
)

PLACES = (
    "the train station",
    "the airport",
    "City Hall",
    "the central library",
    "the museum of modern art",
    "the university campus",
    "the old town square",
    "the stadium",
    "the harbor",
    "the main post office",
    "Riverside Park",
    "the convention center",
    "the cathedral",
    "the shopping mall",
    "the zoo",
)

LENGTH_UNITS = ("meters", "kilometers", "centimeters", "miles", "feet", "inches")
MASS_UNITS = ("kilograms", "grams", "pounds", "ounces")
VOLUME_UNITS = ("liters", "milliliters", "gallons")

NUMBER_WORDS = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)

FIRST_TODAY, TODAY_SPAN_DAYS = date(2024, 1, 1), 3 * 365


def email_of(rng: random.Random, person: str) -> str:
    surname = rng.choice(("smith", "lee", "garcia", "khan", "novak", "rossi"))
    return f"{person.lower()}.{surname}@{rng.choice(MAIL_DOMAINS)}"


def random_today(rng: random.Random) -> date:
    """The task's 'today': any day of 2024-2026, so relative dates cross months and years."""
    return FIRST_TODAY + timedelta(days=rng.randrange(TODAY_SPAN_DAYS))


def future_date(rng: random.Random, today: date) -> date:
    return today + timedelta(days=rng.randrange(1, 90))


def spoken_date(rng: random.Random, day: date) -> str:
    """An explicit date the way people write it; the call always carries the ISO form."""
    style = rng.randrange(3)
    if style == 0:
        return day.isoformat()
    if style == 1:
        return f"{MONTHS[day.month - 1]} {day.day}, {day.year}"
    return f"{day.day} {MONTHS[day.month - 1]} {day.year}"


def random_time(rng: random.Random) -> str:
    return f"{rng.randrange(7, 22):02d}:{rng.choice((0, 15, 30, 45)):02d}"


def twelve_hour(time: str) -> str:
    """'19:30' -> '7:30 pm', '09:00' -> '9 am': the wording level 5 asks the model to normalise."""
    hour, minute = map(int, time.split(":"))
    suffix = "am" if hour < 12 else "pm"
    hour12 = hour % 12 or 12
    return f"{hour12} {suffix}" if minute == 0 else f"{hour12}:{minute:02d} {suffix}"


def format_number(value: float) -> str:
    """How a quantity is written in a query: no trailing '.0' on whole numbers."""
    return f"{value:g}" if value != int(value) else str(int(value))


def random_quantity(rng: random.Random) -> float:
    """A quantity to convert: whole numbers mostly, sometimes one decimal."""
    if rng.random() < 0.6:
        return float(rng.randrange(1, 500))
    return rng.randrange(10, 2000) / 10


def random_amount(rng: random.Random) -> float:
    return float(rng.choice((5, 10, 20, 25, 40, 50, 75, 100, 120, 150, 200, 250, 300, 500, 750, 1000, 1200, 2500)))
