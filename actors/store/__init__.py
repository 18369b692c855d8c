"""Records of PFD Actors: SQLAlchemy models, the session scope and the job store."""
