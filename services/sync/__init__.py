"""The sync service: keeps each user's Outlook in step with their switches."""
