"""Email rendering: the weekly issue as MJML → responsive HTML with CSS inlined, plus plain text."""
