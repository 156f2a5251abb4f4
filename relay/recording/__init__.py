"""Recording calls: the user's audio as received and what the user heard, on one clock in
one stereo Ogg/Opus file, the events both ways as JSON lines, and the call's metadata;
written as the call goes, kept within an age and a size (relay/server/call_records.py
decides which calls, relay/server/recording_api.py serves the download)."""
