"""Many relay processes as one: call ids that name their owner, the directory that finds
the owner (a supervisor's runtime directory, or Redis), forwarding of follow-up requests
to it, and limits counted across every process."""
