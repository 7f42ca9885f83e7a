"""Generate the extra training files (deterministic; rerun to rebuild them).

    python data/classifier/generate_extra.py

Writes `interruptions-extra.jsonl` and `navigation-extra.jsonl` next to this script. Written
after `holdout2/` and kept separate from it: no holdout2 utterance or name is reused here.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent

# (topic, context, [BRANCH side questions about it], [MODIFY corrections of the request])
GROUPS = [
    ("recipes", "Sear the scallops in a very hot cast iron pan for ninety seconds a side.",
     ["uh why cast iron", "ninety seconds each side or total", "what if i don't have a cast iron pan what happens to the scallops"],
     ["i've got shrimp not scallops", "um can we do it on the grill", "didn't i say i was vegetarian"]),
    ("recipes", "Temper the chocolate by heating it to about forty five degrees Celsius.",
     ["what does temper mean here", "why forty five exactly", "so tempering is like melting"],
     ["fahrenheit please", "i'm using white chocolate actually", "can you just do the microwave way"]),
    ("history", "The Hanseatic League controlled trade across the Baltic for centuries.",
     ["the han what league", "which cities were in the hanseatic league", "wait the baltic is which sea exactly"],
     ["i asked about the silk road", "shorter version please", "just the main dates"]),
    ("history", "Queen Elizabeth the first never married, and she was called the Virgin Queen.",
     ["why didn't she marry", "who was supposed to marry her", "virgin queen why that name"],
     ["no i meant elizabeth the second", "skip the personal stuff", "can you focus on the armada"]),
    ("science", "Enzymes lower the activation energy of a reaction.",
     ["whats activation energy", "en what enzymes are they proteins", "how do they lower it"],
     ["explain it like i'm ten", "i need the chemistry class version more detail", "uh wasn't i asking about catalysts in cars"]),
    ("science", "Sound travels about four times faster in water than in air.",
     ["why is it faster in water", "what about in steel", "four times hmm so how fast is that in water"],
     ["in kilometers per hour please", "i meant light not sound", "just the number"]),
    ("astronomy", "Jupiter's Great Red Spot is a storm bigger than Earth.",
     ["how long has the red spot been there", "is the storm still growing", "bigger than earth how"],
     ["i was asking about saturn", "give me the kid friendly version", "skip to the moons part"]),
    ("code", "Wrap the call in a try except block to catch the KeyError.",
     ["what's a key error", "why key error and not index error", "try except like try catch"],
     ["i'm writing go not python", "could you show it with dict get instead", "we can't use exceptions in this codebase"]),
    ("code", "Use git rebase to squash those commits into one.",
     ["squash what does squash do", "is rebase dangerous", "how do i pick which commits to squash"],
     ["i'd rather merge than rebase", "i'm using the github website not the terminal", "only the last two commits though"]),
    ("finance", "A Roth IRA is funded with after tax dollars.",
     ["so what's the difference with a traditional ira", "after tax meaning i already paid the tax", "is there an income limit on the roth"],
     ["i'm in canada though", "i asked about a four oh one k", "explain it without the jargon"]),
    ("finance", "Your monthly payment would be about eighteen hundred dollars on a thirty year loan.",
     ["does that include insurance", "how much of that is interest", "eighteen hundred wow why so much"],
     ["what about a fifteen year loan", "i'm putting twenty percent down not ten", "the house is three fifty not four hundred"]),
    ("health", "Most adults need between seven and nine hours of sleep.",
     ["why do teenagers need more", "does napping count", "seven to nine what happens if you get less"],
     ["i asked about toddlers", "just the short answer", "for someone working night shifts"]),
    ("health", "Apply the antibiotic ointment twice a day and keep the cut covered.",
     ["what kind of ointment like neosporin", "why keep it covered", "how long should i keep covering the cut"],
     ["it's a burn not a cut", "it's for my dog", "i'm allergic to neomycin so something else"]),
    ("travel", "The ferry from Dover to Calais takes about ninety minutes.",
     ["can you bring a car on the ferry", "how often does it run", "is calais in france"],
     ["we're going to amsterdam not calais", "we'd rather take the tunnel", "cheapest option please"]),
    ("travel", "Most visitors spend two days exploring Kyoto's temples.",
     ["which temple is the most famous", "do the temples charge entry", "is kyoto far from tokyo"],
     ["we only have one day", "we're more into food than temples", "with a toddler though"]),
    ("directions", "Take exit forty two toward the county fairgrounds.",
     ["is that before or after the toll", "how far is exit forty two", "the fair grounds the ones by the river"],
     ["no toll roads please", "we're on bikes", "i want to go to the airport not the fairgrounds"]),
    ("directions", "Walk two blocks north, then turn east on Grand Avenue.",
     ["which way is north from here", "is grand avenue the big one with the shops", "how long will that walk take"],
     ["i'm in a wheelchair so no stairs", "i'd rather take the bus", "wait i said grand street"]),
    ("music", "Miles Davis recorded Kind of Blue in nineteen fifty nine.",
     ["who played drums on it", "what's modal jazz", "kind of blue is that his best one"],
     ["i asked about john coltrane", "just the famous tracks", "more about the music less history"]),
    ("music", "The guitar is tuned to drop D for this song.",
     ["what is drop d", "how do i tune to drop d", "why drop d for this one"],
     ["i play bass not guitar", "can you do it in standard tuning", "i'm left handed if that matters"]),
    ("sports", "An offside call happens when a player is behind the last defender.",
     ["behind meaning closer to the goal", "what if they're level with the defender", "does offside count on a throw in"],
     ["i meant hockey offside", "explain it for a total beginner", "just give me the rule in one sentence"]),
    ("sports", "The marathon distance is twenty six point two miles.",
     ["why twenty six point two", "how long does it take an average runner", "whats the world record"],
     ["in kilometers", "i asked about a half marathon", "i'm training for a ten k actually"]),
    ("kids_story", "The little robot wanted to learn how to dance.",
     ["why can't robots dance", "what's the robot's name", "does the robot have friends"],
     ["make the robot a girl", "can there be a dinosaur in it", "shorter please it's bedtime"]),
    ("kids_story", "Deep under the sea lived a grumpy old octopus.",
     ["why was he grumpy", "how old is the octopus", "does the octopus have a name"],
     ["make him a nice octopus", "she wants a mermaid story", "can the octopus be funny"]),
    ("gardening", "Plant garlic cloves in the fall, pointy end up.",
     ["how deep do they go", "why the fall and not spring", "pointy end up why does that matter"],
     ["i live in florida there's no real fall", "i'm planting in containers", "i meant onions"]),
    ("tech_support", "Open the Command Prompt as administrator and type ipconfig.",
     ["how do you open it as admin", "what does ipconfig do", "command prompt is that the black window"],
     ["i'm on a chromebook", "can i do it without the command line", "i'm not an admin on this pc"]),
    ("tech_support", "Go to Settings, then Bluetooth, and forget the device.",
     ["what does forget the device do", "will i lose my settings if i forget it", "where's settings on this thing"],
     ["it's an android phone", "i'm talking about my car stereo", "no it's the wifi that's broken"]),
    ("pets", "Rabbits need unlimited hay to keep their teeth worn down.",
     ["why do their teeth keep growing", "what kind of hay timothy", "do guinea pigs need that too"],
     ["we have a guinea pig not a rabbit", "just tell me what to buy", "it's a baby rabbit"]),
    ("weather", "A wind chill of minus twenty can cause frostbite in thirty minutes.",
     ["what's wind chill exactly", "frostbite on which parts first", "minus twenty celsius or fahrenheit"],
     ["i asked about tomorrow not tonight", "for chicago please", "just the temperature no warnings"]),
    ("geography", "Mount Everest sits on the border between Nepal and China.",
     ["how tall is everest", "which side is easier to climb", "is that tibet"],
     ["i asked about k two", "in feet please", "keep it brief"]),
    ("law", "Small claims court usually handles disputes under ten thousand dollars.",
     ["do i need a lawyer for small claims", "how long does it take", "under ten thousand in every state"],
     ["i'm in the uk", "it's about a deposit from my landlord", "just the steps to file"]),
]

ABSORB_CONTEXTS = [c for _, c, _, _ in GROUPS]

NAMES = ["liam", "sofia", "mateo", "aisha", "jack", "noor", "ethan", "lucy", "omar", "grace", "tyler", "mei",
         "kevin", "rosa", "dylan", "hannah", "jamal", "chloe", "ben", "zara", "sam", "olivia", "nate", "ivy",
         "mom", "dad", "babe", "honey", "grandpa", "auntie"]
PETS = ["rex", "bella", "luna", "charlie", "biscuit", "milo", "pepper", "coco", "rocky", "daisy", "ziggy", "oreo"]
ACTIONS = [
    "stop hitting your sister", "stop jumping on the couch", "stop poking him", "quit kicking the chair",
    "put your shoes on", "can you get the door", "dinner's in ten minutes", "where did you put my keys",
    "don't touch that", "turn that down please", "i'll be there in a sec", "give it back to her", "not now i'm busy",
    "stop stop that's enough of that", "can you grab the milk", "go brush your teeth", "hold on one second",
    "shh i'm trying to listen", "stop throwing the ball inside", "be nice to your brother", "the car's here let's go",
    "did you feed the cat", "stop running in the house", "leave your sister alone", "is the oven still on",
    "cut it out you two", "stop climbing on that", "could you turn off the tap", "hurry up we're late",
    "stop chewing with your mouth open",
]
PET_ACTIONS = ["stop barking", "get off the bed", "drop it", "no leave it", "stop scratching the door",
               "down get down", "good boy", "come here", "stop chewing that", "off the table", "go lie down",
               "quit whining"]
BACKCHANNELS = [
    "oh wow that's cool", "huh that's wild", "wow i had no idea", "oh neat", "that makes sense", "ah okay i see",
    "oh that's so interesting", "ha that's funny", "cool cool", "oh wow really", "yeah that tracks", "amazing",
    "oh nice", "uh huh yeah", "mm okay", "sure sure", "wow okay", "hahaha", "oh interesting", "that's crazy",
    "no kidding wow", "oh my gosh", "true true", "got it got it", "oh yeah i remember that", "hmm okay", "ooh fancy",
    "whoa", "okay yeah", "oh that's good to know", "sounds good", "oh how cool", "wow that's a lot",
    "ha nice one", "makes sense yeah", "oh fun", "huh", "yikes", "oh no", "that's awesome",
]
NOISES = ["[laughter]", "[baby crying]", "[dog barking]", "[sneezes]", "[music playing]", "[footsteps]", "[clears throat]",
          "[tv in background]", "[kettle whistling]", "[sigh]"]
OFF_TOPIC_QUESTIONS = [
    "what's the date today", "hey what time is my meeting", "how far is the moon", "what's on my calendar tomorrow",
    "who's the president of france", "what's the exchange rate for euros", "how old is tom hanks",
    "whats a good movie to watch tonight", "is it going to rain today", "what's the traffic like to work",
    "how do you say thank you in japanese", "who won the game last night", "when does the mall close",
    "um how many ounces in a cup", "what's the square root of eighty one", "where's the nearest gas station",
    "whats the news today", "how tall is michael jordan", "what's my battery at", "when is mother's day this year",
    "uh who wrote harry potter", "what's a good name for a goldfish", "how long do i boil an egg",
    "what's the population of brazil", "is the post office open on saturday",
    "what's the dow at today", "how much is a flight to miami", "is target open right now",
    "what's the speed of light", "who sang that song happy", "when does daylight saving end",
    "whats the best pizza place near me", "how do i get a stain out of a shirt",
]
REDIRECT_PREFIX = ["", "", "actually ", "forget that ", "never mind ", "hey ", "ok stop ", "different question "]
COMMANDS = [
    "play some jazz", "turn up the volume", "pause", "set a timer for ten minutes", "text my wife i'm on the way",
    "open spotify", "lock the front door", "dim the lights", "call the office", "start the vacuum",
    "add eggs to the grocery list", "skip this", "mute", "read my messages", "turn on do not disturb",
]
POLITE_STOPS = [
    "okay thank you that's all i needed", "that's good thanks", "thanks that's enough for now", "i'm good thank you",
    "could you stop please", "sorry can you stop", "please be quiet for a minute", "alright i got it you can stop",
    "that's fine you can stop there", "no thanks", "let's stop here", "ok i'll look it up myself",
    "no more please", "i think i've heard enough", "that's not helpful stop", "hey hey stop", "please stop talking",
    "ok ok enough", "cancel that", "nevermind i'll figure it out", "this is boring", "can we talk about something different",
    "i don't need this", "we're done here", "shut it off", "wrong thing stop", "ugh no stop", "nope",
    "okay bye", "stop it now", "alright alright i get the idea", "thanks but i'm all set", "please just stop",
    "mm no thanks stop", "you can quit now", "okay shush",
]


def interruption_items(rng: random.Random) -> list[dict[str, str]]:
    out: list[tuple[str, str, str, str]] = []
    for topic, ctx, branches, modifies in GROUPS:
        out += [(topic, ctx, u, "BRANCH") for u in branches]
        out += [(topic, ctx, u, "MODIFY") for u in modifies]

    def ctx() -> tuple[str, str]:
        g = rng.choice(GROUPS)
        return g[0], g[1]

    absorb: list[str] = []
    names = NAMES[:]
    rng.shuffle(names)
    acts = ACTIONS[:]
    rng.shuffle(acts)
    for i, act in enumerate(acts):
        name = names[i % len(names)]
        absorb.append(f"{name} {act}" if i % 3 else f"{act} {name}")
    pets = PETS[:]
    rng.shuffle(pets)
    for i, act in enumerate(PET_ACTIONS):
        p = pets[i % len(pets)]
        absorb.append(f"{p} {act}" if i % 2 else f"{act} {p}")
    absorb += BACKCHANNELS[:28] + NOISES[:6]
    for u in absorb:
        out.append((*ctx(), u, "ABSORB"))
    # echo backchannels: repeat a word from the context with surprise (content overlap, still ABSORB)
    for topic, c, _, _ in GROUPS[::3]:
        word = max((w.strip(".,") for w in c.split()), key=len).lower()
        out.append((topic, c, rng.choice(["{} wow", "oh {} huh", "{} okay", "{} cool"]).format(word), "ABSORB"))

    cancel: list[str] = []
    for q in OFF_TOPIC_QUESTIONS:
        cancel.append(rng.choice(REDIRECT_PREFIX) + q)
    cancel += COMMANDS + POLITE_STOPS
    for u in cancel:
        out.append((*ctx(), u, "CANCEL"))
    return [
        {"id": f"ext-{i:03d}", "topic": t, "context": c, "utterance": u, "label": y}
        for i, (t, c, u, y) in enumerate(out, 1)
    ]


NAV_CONTEXTS = [(t, c) for t, c, _, _ in GROUPS]
RESUME = [
    "okay so where were we now", "so where were we", "right where was i", "carry on", "carry on please", "you can carry on",
    "what were you saying", "sorry what were you saying", "um what were you saying about the {x}",
    "go back to what you were saying", "back to the {x}", "let's get back to it", "get back to the {x} thing",
    "keep going", "ok keep going with the {x}", "continue", "continue with the {x}", "please go on",
    "go ahead and finish", "finish the {x} part", "okay i'm back", "sorry about that go ahead",
    "alright you were saying", "pick up where you left off", "resume", "and then", "what came after that",
    "and what's the next step", "tell me the rest", "what was the rest of it", "finish what you started",
    "okay where did you leave off", "go on with the {x}", "can you continue", "yeah go ahead", "back to you",
    "anyway you were telling me about {x}", "let's hear the rest", "okay sorry continue please", "keep talking",
]
DROP = [
    "forget it", "never mind then", "nevermind the rest", "forget about the {x}", "don't worry about it",
    "that's all i needed", "i'm good", "no thanks", "we're all set", "nah", "no i'm done", "leave it",
    "you can stop there", "drop the {x} thing", "skip the rest", "doesn't matter now", "i got it thanks",
    "i already know the rest", "i found it online", "it's fine we don't need it", "not anymore",
    "i changed my mind about the {x}", "no need to continue", "forget whatever you were saying", "scrap that",
    "ok that's enough", "we're good thanks", "let it go", "stop there", "no more {x}", "i'm done with that",
    "cancel it", "leave the {x} for now", "thanks that's plenty", "nope forget it", "that's fine thanks",
    "never mind all that", "no it's okay", "we don't need the rest", "i'll pass",
]
NEW = [
    "what's the weather in denver", "play the beatles", "set a timer for five minutes", "who invented the telephone",
    "call dad", "what's twenty percent of eighty", "turn off the living room lights", "how do i make pancakes",
    "remind me to water the plants", "what's on tv tonight", "tell me a fun fact", "how far is chicago",
    "we should head back to the parking lot", "go back to the main menu", "go back to the last song", "take me back home",
    "continue playing my podcast", "keep playing the music", "resume the audiobook", "next song",
    "what does ubiquitous mean", "spell necessary", "how do you say hello in german", "book a table for two",
    "where's the closest pharmacy", "wake me up at seven", "what's the score of the lakers game",
    "read me the news", "how long do cats live", "what year did world war two end", "open the garage",
    "what's the capital of peru", "add bread to my list", "start a workout", "convert ten miles to kilometers",
    "navigate back to the office", "go back to the hotel", "lets head back to the campsite",
    "turn the thermostat to seventy", "find me a recipe for soup",
]


def navigation_items(rng: random.Random) -> list[dict[str, str]]:
    xs = {"recipes": "sauce", "history": "history", "science": "science", "astronomy": "planets", "code": "code",
          "finance": "loan", "health": "symptoms", "travel": "trip", "directions": "directions", "music": "album",
          "sports": "rules", "kids_story": "story", "gardening": "garden", "tech_support": "setup", "pets": "rabbit",
          "weather": "forecast", "geography": "mountains", "law": "court"}
    out = []
    for label, phrases in (("RESUME", RESUME), ("DROP", DROP), ("NEW", NEW)):
        for u in phrases:
            t, c = rng.choice(NAV_CONTEXTS)
            out.append((t, c, u.replace("{x}", xs[t]), label))
    rng.shuffle(out)
    return [
        {"id": f"navext-{i:03d}", "topic": t, "context": c, "utterance": u, "label": y}
        for i, (t, c, u, y) in enumerate(out, 1)
    ]


def main() -> None:
    rng = random.Random(20241122)
    for name, items in (("interruptions-extra.jsonl", interruption_items(rng)),
                        ("navigation-extra.jsonl", navigation_items(rng))):
        with open(HERE / name, "w", encoding="utf-8") as f:
            for item in items:
                f.write(json.dumps(item) + "\n")
        print(name, len(items))


if __name__ == "__main__":
    main()
