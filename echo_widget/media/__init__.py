"""The media path of a session: packets forwarded per track, frames assembled beside it."""
