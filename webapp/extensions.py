from flask_htmx import HTMX
from flask_login import LoginManager
from flask_wtf import CSRFProtect

csrf = CSRFProtect()
htmx = HTMX()
login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = "Please sign in to see that page."
login_manager.login_message_category = "info"
login_manager.session_protection = "strong"
