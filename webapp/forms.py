"""WTForms classes; flask-wtf adds the CSRF token to each."""

from flask_wtf import FlaskForm
from wtforms import PasswordField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=254)],
                           render_kw={"autocomplete": "username", "autofocus": True})
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)],
                             render_kw={"autocomplete": "current-password"})


class ChangePasswordForm(FlaskForm):
    current_password = PasswordField("Current password", validators=[DataRequired()],
                                     render_kw={"autocomplete": "current-password"})
    new_password = PasswordField("New password", validators=[DataRequired()],
                                 render_kw={"autocomplete": "new-password"})


class ProjectForm(FlaskForm):
    organisation = SelectField("Organisation", coerce=int, validate_choice=True)
    name = StringField("Project name", render_kw={"autocomplete": "off", "spellcheck": "false"})
    description = TextAreaField("Description", validators=[Length(max=2000)], render_kw={"rows": 3})


_PREDICATES = ("is", "must", "may")


def add_service_error(form: FlaskForm, exc) -> None:
    """Show a service's ``ValidationError`` under the field it names, as a sentence:
    "is required" becomes "Project name is required."; a message with its own subject
    ("acme/web already exists") is shown as it is."""
    field = getattr(form, exc.field)
    message = exc.message
    if message.split(" ", 1)[0] in _PREDICATES:
        message = f"{field.label.text} {message}"
    field.errors.append(message + ".")
