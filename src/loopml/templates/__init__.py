"""Project templates for `loopml init`: one folder each, files copied with the project name filled in."""
