"""Person attributes and text descriptions (issue 15): types, query parser, scoring, recognizer, colours."""
