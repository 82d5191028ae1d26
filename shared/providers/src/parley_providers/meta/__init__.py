"""Meta: Facebook Pages (Messenger, comments), Instagram and the WhatsApp Cloud API, all on Graph."""
