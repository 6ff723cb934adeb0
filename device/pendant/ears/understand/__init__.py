"""From words to intents: the closed set of sentences this home can mean (`grammar`, compiled
in a child process by `grammar_build`), the matcher that names their intent and slots
(`nlu`), and the check of the wearer's own sentences (`sentence_check`)."""
