"""Prompt memory: save the studio form as a named prompt (private or shared with a team), delete one's own."""

from __future__ import annotations

from studio.models import SavedPrompt, Team


def do_save_prompt(
    user, *, name: str, model: str, prompt: str, params: dict, team: Team | None
) -> SavedPrompt:
    """Save a validated prompt with its model and parameters; `team` shares it with that team's members."""
    return SavedPrompt.objects.create(
        user=user, team=team, name=name, model=model, prompt=prompt, params=params
    )


def do_delete_prompt(prompt: SavedPrompt) -> None:
    """Delete a saved prompt (the caller checked it is the user's own); already gone is fine."""
    SavedPrompt.objects.filter(pk=prompt.pk).delete()
